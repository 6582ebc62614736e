"""The analyses of a trained network: Hessian vs GGN (Claim 3), information loss and dependent inputs, the level set."""
