"""Blocks of any nn.Module: the modules that own trainable parameters, traced through one forward pass.

`module_blocks(model, params)` (structural, no data): one block per module whose own `_parameters` hold
trainable tensors, in parameter order, so each block owns a contiguous slice of θ (the rows of G).

`trace(model, layout, x)`: one forward pass over the training inputs with hooks on every module. For each
block it records the first call (order of calls, how many calls), the tensors the module was called with,
its output (the first tensor of a tuple / dict output), and the output of parameter-free leaf modules
that are called right after it on exactly that output (e.g. an nn.ReLU): the block output A_ℓ. The
autograd graph of that pass then says, exactly for differentiable paths, whether A_ℓ is a cut of the
network (every path from the input to the output passes through it; no skip around it) and which
parameters it depends on (the parameters upstream in DESIGN §1's dependence bound). Floating inputs are
followed from x itself; integer tensors that carry the input (x or a view of it, or per-example ids that
differ across the batch, e.g. tokens cast inside forward) from the modules called on them. A block
whose output varies with the input although no recorded path brings the input there makes the model
uncuttable (the input travels where autograd cannot see it). Limitation: an input-dependent quantity that
enters the output only through a non-differentiable op (a mask x > 0 used as a constant) is not a path.

A module that owns parameters but is never called (its parameters are used functionally by a caller, as
nn.MultiheadAttention does with out_proj) joins the nearest called ancestor when their rows are adjacent;
otherwise the model cannot be cut and `trace` says why (the caller falls back to one whole-model block).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .models import Block, Layout, ParamInfo, _describe

CONV = (nn.modules.conv._ConvNd,)


def _owner(param_name: str) -> str:
    return param_name.rsplit(".", 1)[0] if "." in param_name else ""


def module_blocks(model: nn.Module, params: list[ParamInfo]) -> tuple[list[Block], str]:
    """One block per parameter-owning module in parameter order; ([], why) if a module's rows are split."""
    mods = dict(model.named_modules())
    groups: list[tuple[str, int, int]] = []
    for p in params:
        name = _owner(p.name)
        if groups and groups[-1][0] == name and groups[-1][2] == p.offset:
            groups[-1] = (name, groups[-1][1], p.offset + p.size)
        else:
            groups.append((name, p.offset, p.offset + p.size))
    names = [g[0] for g in groups]
    if len(set(names)) != len(names):
        return [], "a module's parameters are not contiguous in named_parameters()"
    blocks = []
    for i, (name, start, stop) in enumerate(groups, start=1):
        m = mods.get(name, model)
        blocks.append(Block(i, f"{i}: {name or type(model).__name__} · {_describe(m)}", (), start, stop, name))
    return blocks, ""


@dataclass
class TracedBlock:
    block: Block
    call_order: int  # 1 = called first in the forward pass
    calls: int  # how many times the module was called (the first call is analysed)
    inputs: list[torch.Tensor]  # the first call's tensor arguments (detached copies)
    pre: torch.Tensor  # the module's output (detached copy)
    post: torch.Tensor  # after the parameter-free modules chained on it (detached copy)
    after: list[str] = field(default_factory=list)  # those modules' names
    node: object = None  # autograd node of the block output (None: it does not require grad)
    notes: list[str] = field(default_factory=list)
    encloses: bool = False  # a container whose own parameters are used around its sub-blocks
    per_example: bool = True  # the output's first dimension is the batch of training inputs
    input_dependent: bool = True
    cut: bool = False  # every path from the input to the network output passes through A_ℓ
    upstream: int = 0  # trainable parameters A_ℓ depends on
    module: object = None  # the nn.Module itself
    node_pre: object = None  # autograd node of the module's own output
    live_inputs: list = field(default_factory=list)  # the first call's inputs themselves (until the graph is read)


@dataclass
class Trace:
    blocks: list[TracedBlock]  # in parameter order
    out: torch.Tensor
    why_not: str = ""  # non-empty: the model cannot be cut into these blocks
    order_differs: bool = False


def _first_tensor(out) -> tuple[torch.Tensor | None, str]:
    if isinstance(out, torch.Tensor):
        return out, ""
    if isinstance(out, (tuple, list)):
        for i, t in enumerate(out):
            if isinstance(t, torch.Tensor):
                return t, f"its output is a {type(out).__name__}: item {i} is analysed"
    if isinstance(out, dict):
        for key, t in out.items():
            if isinstance(t, torch.Tensor):
                return t, f"its output is a dict: {key!r} is analysed"
    return None, ""


class _Recorder:
    """Forward hooks on every module: call order, first-call inputs and outputs, activations chained on."""

    def __init__(self, model: nn.Module, blocks: set[str]):
        self.names = {id(m): n for n, m in model.named_modules()}
        self.blocks = blocks  # modules whose first call's inputs are copied
        self.inputs: dict[str, list[torch.Tensor]] = {}
        self.events: list[tuple[str, str, tuple, object]] = []  # (kind, name, inputs, output)
        self.handles = []
        for m in {id(m): m for m in model.modules()}.values():
            self.handles.append(m.register_forward_pre_hook(self._pre))
            self.handles.append(m.register_forward_hook(self._post))

    def _pre(self, m, inputs):
        name = self.names[id(m)]
        if name in self.blocks and name not in self.inputs:
            self.inputs[name] = [t for t in inputs if isinstance(t, torch.Tensor)]  # kept, copied below
            self.inputs[name] = [(t, t.detach().clone()) for t in self.inputs[name]]
        self.events.append(("pre", name, inputs, None))

    def _post(self, m, inputs, out):
        name = self.names[id(m)]
        t, _ = _first_tensor(out)
        node = t.grad_fn if t is not None else None
        keep = t is not None and (name in self.blocks or _param_free_leaf(m))  # a copy: in-place ops may follow
        self.events.append(("post", name, inputs, (out, t, node, t.detach().clone() if keep else None)))

    def close(self):
        for h in self.handles:
            h.remove()

    def first_calls(self) -> dict[str, tuple[int, int, int | None, int]]:
        """name -> (index of the first 'pre' event, call order among modules, index of its 'post', calls)."""
        seen: dict[str, list] = {}
        order = 0
        depth: dict[str, int] = {}
        for e, (kind, name, _, _) in enumerate(self.events):
            if kind == "pre":
                if name not in seen:
                    order += 1
                    seen[name] = [e, order, None, 0]
                    depth[name] = 0
                seen[name][3] += 1
                depth[name] += 1
            else:
                depth[name] -= 1
                if seen[name][2] is None and depth[name] == 0:
                    seen[name][2] = e
        return {n: tuple(v) for n, v in seen.items()}


def _param_free_leaf(m: nn.Module) -> bool:
    return not list(m.children()) and not any(True for _ in m.parameters())


def _chain(rec: _Recorder, mods: dict[str, nn.Module], post_at: int, t: torch.Tensor, node):
    """Parameter-free leaf modules called next, each on exactly the previous output: (tensor, its autograd node
    when its module returned it, names, copy of its value)."""
    names, value = [], None
    e = post_at + 1
    while e + 1 < len(rec.events):
        kind, name, inputs, _ = rec.events[e]
        nxt = rec.events[e + 1]
        if kind != "pre" or not _param_free_leaf(mods[name]) or not inputs or inputs[0] is not t:
            break
        if nxt[0] != "post" or nxt[1] != name or nxt[3][1] is None:
            break
        _, t, node, value = nxt[3]
        names.append(name)
        e += 2
    return t, node, names, value


def _absorb(blocks: list[Block], called: set[str]) -> tuple[list[Block], str]:
    """Blocks of modules never called join the called ancestor just before them in parameter order."""
    out: list[Block] = []
    for b in blocks:
        if b.module in called:
            out.append(b)
            continue
        host = out[-1] if out else None
        inside = host is not None and (host.module == "" or b.module.startswith(host.module + "."))
        if host is None or not inside or host.stop != b.start:
            return [], (f"module {b.module or '(the model)'!r} owns parameters but is never called in the forward "
                        "pass, and no called module that contains it owns the rows just before its own")
        out[-1] = Block(host.index, host.name, (), host.start, b.stop, host.module)
    return [Block(i, f"{i}: {b.name.split(': ', 1)[1]}", (), b.start, b.stop, b.module)
            for i, b in enumerate(out, start=1)], ""


def _walk(start, stop, sources: set[int]) -> tuple[bool, set[int]]:
    """Depth-first over the autograd graph from `start`, never through the node `stop`: (a source node was
    reached, ids of the leaf tensors reached). Node wrappers are kept alive while walking, so no id is reused;
    `sources` are ids of nodes the caller keeps alive."""
    hit, leaves, seen, stack = False, set(), {}, [start] if start is not None else []
    while stack:
        node = stack.pop()
        if node is None or node is stop or id(node) in seen:
            continue
        seen[id(node)] = node
        if id(node) in sources:
            hit = True
        var = getattr(node, "variable", None)
        if var is not None:
            leaves.add(id(var))
        stack.extend(n for n, _ in node.next_functions)
    return hit, leaves


def _shares_storage(t: torch.Tensor, x: torch.Tensor) -> bool:
    try:
        return t.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return False


def _forward(model: nn.Module, x: torch.Tensor, names: set[str]):
    rec = _Recorder(model, names)
    try:
        with torch.enable_grad():
            out = model(x)
    finally:
        rec.close()
    return rec, out


def trace(model: nn.Module, layout: Layout, x: torch.Tensor) -> Trace:
    """One forward pass over the k inputs x: the traced blocks in parameter order (see the module doc)."""
    k = x.shape[0]
    mods = dict(model.named_modules())
    xin = x.detach().clone().requires_grad_(True) if x.is_floating_point() else x
    try:
        rec, out = _forward(model, xin, {b.module for b in layout.blocks})
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code: hooks it does not allow, and the like
        return Trace([], x, f"the traced forward pass failed: {type(exc).__name__}: {str(exc)[:200]}")
    out, _ = _first_tensor(out)
    calls = rec.first_calls()
    blocks, why = _absorb(list(layout.blocks), {n for n, c in calls.items() if c[2] is not None})
    if why or out is None or out.grad_fn is None:
        return Trace([], x, why or "the output does not depend on the parameters through autograd")
    traced = [_traced(b, rec, calls, mods, k) for b in blocks]
    _graph_facts(model, traced, out, xin, x)
    bad = [t for t in traced if not t.per_example and t.input_dependent]
    if bad:
        return Trace([], out, f"the output of {bad[0].block.module!r} has shape {tuple(bad[0].post.shape)}, "
                              f"whose first dimension is not the batch of {k} inputs")
    hidden = [t for t in traced if t.per_example and not t.input_dependent and k > 1
              and bool((t.post != t.post[:1]).any())]
    if hidden:  # it varies with the input, yet no recorded path brings the input there
        return Trace([], out, f"the input reaches {hidden[0].block.module!r} by a path autograd does not record "
                              "(an integer cast or indices built from the input, outside a module call), so a skip "
                              "around a block could not be ruled out")
    rank = {o: i for i, o in enumerate(sorted(t.call_order for t in traced), start=1)}
    for t in traced:
        t.call_order = rank[t.call_order]  # among the blocks: 1 = the first called
    order = [t.call_order for t in traced]
    return Trace(traced, out, "", order != sorted(order))


def _traced(b: Block, rec: _Recorder, calls, mods, k: int) -> TracedBlock:
    pre_at, order, post_at, n_calls = calls[b.module]
    out, t, node, pre = rec.events[post_at][3]
    notes = []
    if n_calls > 1:
        notes.append(f"called {n_calls} times: the first call decides its place and its output is analysed")
    _, why = _first_tensor(out)
    if why:
        notes.append(why)
    inner = {n for n, c in calls.items() if pre_at < c[0] < post_at and n in rec.blocks and n != b.module}
    if inner:
        notes.append("its own parameters are used around its sub-blocks: its output is the whole container's")
        post_node, after, post = node, [], None
    else:
        _, post_node, after, post = _chain(rec, mods, post_at, t, node)
    live = rec.inputs.get(b.module, [])
    tb = TracedBlock(b, order, n_calls, [c for _, c in live], pre, pre if post is None else post, after,
                     post_node, notes, bool(inner))
    tb.module = mods.get(b.module)
    tb.per_example = tb.post.ndim >= 1 and tb.post.shape[0] == k
    tb.node_pre = node
    tb.live_inputs = [orig for orig, _ in live]
    return tb


def _reads_input(a: torch.Tensor, x: torch.Tensor) -> bool:
    """An integer tensor that carries the input: (a view of) x itself, or per-example ids that differ across the
    batch (only the input differs across it), e.g. token ids cast from floating inputs inside forward."""
    if a.is_floating_point() or a.is_complex():
        return False
    if _shares_storage(a, x):
        return True
    return a.ndim >= 1 and a.shape[0] == x.shape[0] > 1 and bool((a != a[:1]).any())


def _sources(traced: list[TracedBlock], xin: torch.Tensor, x: torch.Tensor
             ) -> tuple[dict[int, set[int]], set[int], list]:
    """Per block, the autograd nodes where information about the input enters (other than through the block
    itself): x's own node for floating inputs, and the outputs of the modules called on integer tensors that
    carry the input. And those blocks, and the nodes themselves (kept alive while their ids are used)."""
    alive: list = []
    common: set[int] = set()
    if xin.requires_grad:
        probe = xin * 1.0  # holds x's gradient accumulator: the node every differentiable use of x leads to
        x_node = probe.grad_fn.next_functions[0][0]
        alive += [probe, x_node]
        common.add(id(x_node))
    reads = {i for i, t in enumerate(traced) if any(_reads_input(a, x) for a in t.live_inputs)}
    out: dict[int, set[int]] = {}
    for i, t in enumerate(traced):
        out[i] = common | {id(n) for r in reads for n in (traced[r].node_pre, traced[r].node)
                           if n is not None and not (r == i and n is t.node)}
    return out, reads, alive


def _graph_facts(model: nn.Module, traced: list[TracedBlock], out: torch.Tensor, xin: torch.Tensor,
                 x: torch.Tensor) -> None:
    """For each block: does it depend on the input, which parameters it depends on, is its output a cut."""
    sources, reads, _alive = _sources(traced, xin, x)
    sizes = {id(p): p.numel() for p in model.parameters() if p.requires_grad}
    for i, t in enumerate(traced):
        reached, leaves = _walk(t.node, None, sources[i])
        t.input_dependent = i in reads or reached
        t.upstream = sum(sizes.get(v, 0) for v in leaves)
        bypass, _ = _walk(out.grad_fn, t.node, sources[i])
        t.cut = t.node is not None and not bypass
        t.live_inputs = []  # drop the references to the live inputs
