"""The engine catches what it means, by type (issue 14): what it cannot handle still surfaces.

Each fallback is tried with the failure it exists for (it takes the other path) and with a failure it
does not exist for (the error propagates, no silent retry): the dense Hessian's per-column loop, the
level-set probe's Jacobian route, the matrix-free double-vjp route and the data loader's pickle check.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from basintui.engine.analyses import curvature
from basintui.engine.analyses.retraction import Probe
from basintui.engine.errors import InputError
from basintui.engine.problem import data as data_mod
from basintui.engine.problem.models import flat_params, layout_of
from basintui.engine.routes.jacobian import compute_G
from basintui.engine.routes.matfree import jacobian_operator


class SinNoVmap(torch.autograd.Function):
    """sin with forward- and reverse-mode rules but no vmap support: vmap raises RuntimeError."""

    @staticmethod
    def forward(x):
        return x.sin()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.cos()

    @staticmethod
    def jvp(ctx, x_t):
        (x,) = ctx.saved_tensors
        return x.cos() * x_t


class SinNoJvp(torch.autograd.Function):
    """sin without a forward-mode rule: torch.func.jvp raises NotImplementedError."""

    @staticmethod
    def forward(x):
        return x.sin()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.cos()


def _theta(n: int = 5) -> torch.Tensor:
    return torch.linspace(-1.0, 1.5, n, dtype=torch.float64)


# --------------------------------------------------------------------------- dense Hessian


def test_dense_hessian_without_vmap_support_loops_over_columns_and_says_so():
    def L(t):
        return (SinNoVmap.apply(t) ** 2).sum() + (t[0] * t[1]) ** 2

    theta = _theta()
    notes: list[str] = []
    H = curvature.dense_hessian(L, theta, chunk=2, notes=notes)
    ref = torch.autograd.functional.hessian(lambda t: (t.sin() ** 2).sum() + (t[0] * t[1]) ** 2, theta)
    torch.testing.assert_close(H, ref, rtol=1e-12, atol=1e-12)
    assert len(notes) == 1 and "one at a time" in notes[0] and "RuntimeError" in notes[0]


def test_dense_hessian_out_of_memory_propagates_instead_of_looping():
    calls = {"n": 0}

    def L(t):
        calls["n"] += 1
        if calls["n"] == 1:  # the first (vmapped) block runs out of memory; single columns would fit
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return (t**4).sum()

    notes: list[str] = []
    with pytest.raises(torch.OutOfMemoryError):
        curvature.dense_hessian(L, _theta(), chunk=5, notes=notes)
    assert notes == []


def test_dense_hessian_error_of_the_product_itself_propagates():
    def L(t):
        raise ValueError("a bug in the loss")

    with pytest.raises(ValueError, match="a bug in the loss"):
        curvature.dense_hessian(L, _theta())


# --------------------------------------------------------------------------- level-set Jacobian route


def _probe() -> Probe:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    x = torch.randn(4, 2, dtype=torch.float64)
    return Probe(model, layout_of(model), x, None, 0.0, None)


def test_levelset_jacobian_route_falls_back_to_compute_G_when_jacrev_cannot_trace(monkeypatch):
    pr = _probe()

    def untraceable(theta):  # what torch.func.jacrev raises for a model it cannot trace
        raise RuntimeError("Cannot access data pointer of Tensor that doesn't have storage")

    monkeypatch.setattr(pr, "_J_jacrev", untraceable)
    theta = flat_params(pr.model).to(torch.float64)
    J = pr.J(theta)
    assert pr._jac_route == "compute_G"
    G, _ = compute_G(pr.model, pr.layout, pr.x)
    np.testing.assert_array_equal(J, G.T.numpy())


def test_levelset_jacobian_route_does_not_hide_other_errors(monkeypatch):
    pr = _probe()

    def buggy(theta):
        raise TypeError("a bug, not a model jacrev cannot trace")

    monkeypatch.setattr(pr, "_J_jacrev", buggy)
    with pytest.raises(TypeError, match="a bug"):
        pr.J(flat_params(pr.model).to(torch.float64))


# --------------------------------------------------------------------------- matrix-free J v


class _Sin(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _op_case(fn):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), _Sin(fn), nn.Linear(4, 2)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    return model, jacobian_operator(model, layout_of(model), x), x


def test_matfree_without_a_forward_mode_rule_uses_double_vjp():
    model, op, x = _op_case(SinNoJvp.apply)
    v = np.random.default_rng(0).standard_normal(op.shape[0])
    Jv = op.rmatvec(v)
    assert op.forward_ad is False
    G, _ = compute_G(model, layout_of(model), x, method="loop")
    np.testing.assert_allclose(Jv, G.numpy().T @ v, rtol=1e-12, atol=1e-12)


def test_matfree_other_runtime_errors_propagate_even_when_they_mention_forward():
    calls = {"n": 0}

    def flaky(h):
        calls["n"] += 1
        if calls["n"] == 2:  # the first call sized the outputs; the second is inside the jvp
            raise RuntimeError("forward pass failed: a user error that mentions jvp")
        return torch.sin(h)

    _model, op, _x = _op_case(flaky)
    with pytest.raises(RuntimeError, match="forward pass failed"):
        op.rmatvec(np.ones(op.shape[0]))
    assert op.forward_ad is True


# --------------------------------------------------------------------------- data files


def test_a_pickle_stream_named_npz_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "objects.npz"
    path.write_bytes(pickle.dumps({"x": [[1.0]], "y": [1.0]}, protocol=4))
    calls = []
    monkeypatch.setattr(pickle, "load", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: calls.append(a))
    with pytest.raises(InputError, match="never unpickled"):
        data_mod._load_file(path)
    assert calls == []


def test_object_arrays_in_an_npz_are_refused_from_the_header(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([[1.0], [2.0]]), y=np.array([{"a": 1}, None], dtype=object))
    assert data_mod._npz_headers(path)["y"][1].hasobject
    with pytest.raises(InputError, match="never unpickled"):
        data_mod._load_file(path)


def test_an_unreadable_archive_has_no_headers_and_loading_says_why(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    assert data_mod._npz_headers(path) == {}
    with pytest.raises(InputError, match="cannot read"):
        data_mod._load_file(path)
