"""The analyses of a trained network, one stage module each (`analyse(ctx, report)`), with their parts:

- hessian.py: the Hessian beside its Gauss-Newton term (Claim 3); curvature.py (the loss in output space,
  Hessian-vector products, the dense Hessian), claim3.py (H's rank rule, the Weyl counts, the verdict);
- infoloss.py: information loss by layer; partitions.py (which inputs a block merges), rfactor.py (ranks
  from G's R factor), dependent.py (the training inputs made dependent);
- levelset.py: the level set through θ*; retraction.py (F, J and the retraction onto the level set),
  branches.py (local branch dimension, tangent spaces, the verdict per radius).
"""
