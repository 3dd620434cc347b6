"""Issue 13 B: shape-aware formulas (fan_in, fan_out, dimN), `where:` conditions, `overrides:` precedence.

Expected values are computed here by hand from the tensors' shapes, never read back from lrrules.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import lrrules


def _models() -> dict[str, nn.Module]:
    """Several families: MLP, CNN with depthwise and grouped convs, embedding LM, 1-D and 3-D convs."""
    torch.manual_seed(0)
    return {
        "mlp": nn.Sequential(nn.Linear(16, 64), nn.LayerNorm(64), nn.Linear(64, 8)),
        "cnn": nn.Sequential(nn.Conv2d(3, 32, 3), nn.BatchNorm2d(32), nn.Conv2d(32, 32, 3, groups=32),
                             nn.Conv2d(32, 64, 1), nn.Conv2d(64, 64, 5, groups=4)),
        "lm": nn.Sequential(nn.Embedding(100, 24), nn.Linear(24, 96, bias=False), nn.Linear(96, 24),
                            nn.Linear(24, 100)),
        "conv1d3d": nn.Sequential(nn.Conv1d(4, 8, 7), nn.Conv3d(8, 2, (1, 3, 3)), nn.GroupNorm(1, 2)),
    }


def _torch_fans(t: torch.Tensor) -> tuple[int, int]:
    """The peer: torch's own fan computation for 2-D and more; 1-D by the documented convention."""
    if t.ndim >= 2:
        return nn.init._calculate_fan_in_and_fan_out(t)
    return 1, t.shape[0]


def _lrs(plan: lrrules.Plan) -> dict[str, float]:
    return {r.info.name: r.settled.lr for r in plan.rows if r.settled is not None}


@pytest.mark.parametrize("family", list(_models()))
def test_mup_and_muon_formulas_equal_hand_computation(family: str) -> None:
    model = _models()[family]
    rules = lrrules.loads("""
version: 1
vars: {base_width: 8}
defaults: {lr: 0.01}
rules:
  - {name: matrices, match: {ndim: [2, 3, 4, 5]}, lr_mult: "sqrt(max(1, fan_out / fan_in))"}
  - {name: vectors, match: {ndim: 1}, lr_mult: "base_width / fan_out"}
""")
    got = _lrs(rules.resolve(model))
    want = {}
    for name, p in model.named_parameters():
        fan_in, fan_out = _torch_fans(p)
        want[name] = 0.01 * (math.sqrt(max(1, fan_out / fan_in)) if p.ndim >= 2 else 8 / fan_out)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-12), name


@pytest.mark.parametrize("family", list(_models()))
def test_dims_are_the_shape(family: str) -> None:
    model = _models()[family]
    rules = lrrules.loads("""
version: 1
defaults: {lr: 1.0}
rules:
  - {name: two, match: {ndim: 2}, lr: "dim0 + 1000 * dim1"}
  - {name: more, match: {ndim: [3, 4, 5]}, lr: "dim0 + 1000 * dim1 + 1e6 * dim2"}
  - {name: one, match: {ndim: 1}, lr: "dim0"}
""")
    got = _lrs(rules.resolve(model))
    for name, p in model.named_parameters():
        s = list(p.shape)
        want = s[0] + (1000 * s[1] if p.ndim >= 2 else 0) + (1e6 * s[2] if p.ndim >= 3 else 0)
        assert got[name] == want, name


def test_mup_width_mult_one_line() -> None:
    # muP's hidden-weight rule "lr = base / width_mult", width_mult = fan_in / base_fan_in.
    model = nn.Sequential(nn.Linear(32, 128), nn.Linear(128, 128), nn.Linear(128, 10))
    rules = lrrules.loads("""
version: 1
vars: {base_fan_in: 32}
defaults: {lr: 0.1}
rules:
  - {name: hidden, match: {ndim: 2}, lr: "base_lr / (fan_in / base_fan_in)"}
  - {name: rest, fallback: true}
""")
    got = _lrs(rules.resolve(model))
    assert got["0.weight"] == pytest.approx(0.1 / (32 / 32))
    assert got["1.weight"] == pytest.approx(0.1 / (128 / 32))
    assert got["2.weight"] == pytest.approx(0.1 / (128 / 32))
    assert got["0.bias"] == 0.1


def test_missing_dimension_is_a_clear_error() -> None:
    rules = lrrules.loads("""
version: 1
defaults: {lr: 1.0}
rules:
  - {name: all, match: "*", lr_mult: "dim1"}
""")
    with pytest.raises(lrrules.RuleFileError) as info:
        rules.resolve(nn.Linear(2, 3))
    message = str(info.value)
    assert "bias" in message and "no dim1" in message and "ndim" in message
