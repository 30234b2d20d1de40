"""A lean CPU forward for the served module: the same torch operators, called directly.

A one-row request through the served tabular MLP calls about a dozen ``nn.Module``
objects (embeddings, linear layers, activations, dropouts that are the identity in eval
mode); at batch sizes a server sees, Python's module-call machinery costs about as much as
the arithmetic. :func:`lean_forward` recognises the exact module structure kfgpu builds
(:class:`~kfgpu.training.served.ServedModel` around a
:class:`~kfgpu.training.network.TabularMLP` whose head is linear layers, ReLUs and
dropouts) and returns a function that calls the same operators (``embedding``, ``cat``,
``linear``, ``relu``, ``softmax``) on the same weights, in the same order. Anything else
(another family, a subclass, a layer it does not know, a module in training mode) gets
None and the caller keeps the module.

It is checked before use: the lean function must give bit-identical outputs to the
module's ``forward_transformed`` on random inputs of several batch sizes, else None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["lean_forward"]

#: Batch sizes the lean forward is checked at against the module, before it is used.
CHECK_ROWS = (1, 2, 7, 64)


def lean_forward(module: Any) -> Callable[[Any, Any], Any] | None:
    """``(dense, emb) -> output`` equal to ``module.forward_transformed``, or None.

    Call it and the module under ``torch.inference_mode()``.
    """
    import torch
    from torch import nn

    from kfgpu.training.network import TabularMLP
    from kfgpu.training.served import ServedModel

    if type(module) is not ServedModel or module.training:
        return None
    net = module.network
    if type(net) is not TabularMLP or net.training or type(net.mlp) is not nn.Sequential:
        return None
    tables = []
    for emb in net.embeddings:
        if type(emb) is not nn.Embedding or emb.max_norm is not None:
            return None
        tables.append(emb.weight)
    steps: list[tuple[str, Any, Any]] = []
    for layer in net.mlp:
        kind = type(layer)
        if kind is nn.Linear:
            steps.append(("linear", layer.weight, layer.bias))
        elif kind is nn.ReLU:
            steps.append(("relu", None, None))
        elif kind in (nn.Dropout, nn.Identity):
            if layer.training:
                return None
        else:
            return None
    if not any(op == "linear" for op, _, _ in steps):
        return None
    task = module.task
    scale, mean = module.target_scale, module.target_mean
    linear, relu, embedding, cat, softmax = (
        torch.nn.functional.linear,
        torch.relu,
        torch.embedding,
        torch.cat,
        torch.softmax,
    )

    def forward(dense: Any, emb: Any) -> Any:
        if tables:
            x = cat([dense, *[embedding(w, emb[:, i]) for i, w in enumerate(tables)]], dim=1)
        else:
            x = dense
        for op, w, b in steps:
            x = linear(x, w, b) if op == "linear" else relu(x)
        if task == "classification":
            return softmax(x.float(), dim=1)
        return x.float().squeeze(1) * scale + mean

    return forward if _agrees(module, forward, tables) else None


def _agrees(module: Any, forward: Callable[[Any, Any], Any], tables: list[Any]) -> bool:
    """``forward`` equals the module's ``forward_transformed`` bit for bit on random
    inputs (a fixed seed, not the global generator)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    first = next(m for m in module.network.mlp if isinstance(m, torch.nn.Linear))
    width = first.in_features - sum(int(w.shape[1]) for w in tables)
    with torch.inference_mode():
        for n in CHECK_ROWS:
            dense = torch.randn(n, width, generator=gen)
            codes = [torch.randint(0, int(w.shape[0]), (n, 1), generator=gen) for w in tables]
            emb = torch.cat(codes, dim=1) if codes else torch.zeros(n, 0, dtype=torch.long)
            want = module.forward_transformed(dense, emb)
            got = forward(dense, emb)
            if got.dtype != want.dtype or got.shape != want.shape or not torch.equal(got, want):
                return False
    return True
