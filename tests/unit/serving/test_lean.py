"""The lean CPU forward: the served module's operators called directly, bit-identical."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kfgpu.serving.lean import lean_forward
from kfgpu.training.network import TabularMLP
from kfgpu.training.served import ServedModel


def _served(task: str = "classification", **kw: object) -> ServedModel:
    torch.manual_seed(1)
    net = TabularMLP(
        n_numeric=5,
        cardinalities=[4, 9],
        embedding_dims=[2, 3],
        hidden_sizes=[16, 8],
        dropout=0.1,
        n_outputs=3 if task == "classification" else 1,
        **kw,  # type: ignore[arg-type]
    )
    return ServedModel(nn.Identity(), net, task=task, target_mean=3.5, target_scale=2.25).eval()


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("rows", [1, 5, 300])
def test_outputs_equal_the_module_bit_for_bit(task: str, rows: int) -> None:
    module = _served(task)
    forward = lean_forward(module)
    assert forward is not None
    gen = torch.Generator().manual_seed(rows)
    dense = torch.randn(rows, 5, generator=gen) * 10
    emb = torch.stack(
        [torch.randint(0, 4, (rows,), generator=gen), torch.randint(0, 9, (rows,), generator=gen)],
        dim=1,
    )
    with torch.inference_mode():
        want = module.forward_transformed(dense, emb)
        got = forward(dense, emb)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert torch.equal(got, want)


def test_modules_it_does_not_know_keep_their_own_forward() -> None:
    training = _served()
    training.train()  # dropout active: not the identity
    assert lean_forward(training) is None

    other_layer = _served()
    other_layer.network.mlp.insert(1, nn.LayerNorm(16))
    assert lean_forward(other_layer) is None

    class Custom(TabularMLP):  # a subclass may change forward
        pass

    sub = _served()
    sub.network.__class__ = Custom
    assert lean_forward(sub) is None

    other_family = ServedModel(nn.Identity(), nn.Sequential(nn.Linear(5, 2)), task="regression")
    assert lean_forward(other_family.eval()) is None
    assert lean_forward(nn.Linear(2, 2)) is None
