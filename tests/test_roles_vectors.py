"""A vector stored as a matrix (weight_norm's magnitude, a (1, d) gain) is not a hidden matrix: Muon's
split gives it to AdamW (found by review of issue 20's role matchers)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lrrules


class Gains(nn.Module):
    def __init__(self, parametrized: bool) -> None:
        super().__init__()
        self.inner = nn.Linear(8, 16)
        self.hidden = nn.Linear(16, 16)
        wn = torch.nn.utils.parametrizations.weight_norm if parametrized else torch.nn.utils.weight_norm
        self.hidden = wn(self.hidden)
        self.scale = nn.Parameter(torch.ones(1, 16))
        self.out = nn.Linear(16, 3)


def _vector_like(shape: tuple[int, ...]) -> bool:
    return sum(1 for d in shape if d > 1) < 2


@pytest.mark.parametrize("parametrized", [False, True])
def test_vectors_in_matrix_form_are_not_hidden_and_go_to_adamw(parametrized: bool) -> None:
    model = Gains(parametrized)
    plan = lrrules.resolve(lrrules.load("lrrules:muon"), model)
    routed = {name: g.optimizer for g in plan.groups for name in g.params}
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    on_muon = {n for n, o in routed.items() if o == "muon"}
    # Independent of lrrules: 2-D tensors with two dims wider than 1, except the head (out.*).
    expected = {n for n, s in shapes.items() if len(s) == 2 and not _vector_like(s) and not n.startswith("out.")}
    assert on_muon == expected
    assert any(_vector_like(s) and len(s) == 2 for s in shapes.values())  # the case is really there


def test_a_modifier_can_give_conv1d_the_linear_reading_of_muons_factor() -> None:
    pytest.importorskip("transformers")
    from transformers import GPT2Config, GPT2Model

    with torch.device("meta"):
        model = GPT2Model(GPT2Config(n_layer=1, n_embd=64, n_head=2, vocab_size=50, n_positions=16))
    text = ("version: 1\nextends: lrrules:muon\nmodifiers:\n  - {name: conv1d-factor, match: {module: Conv1D, role: hidden},"
            " lr_mult: \"sqrt(max(1, dim1 / dim0)) / sqrt(max(1, dim0 / dim1))\"}\n")
    plan = lrrules.resolve(lrrules.loads(text), model)
    lrs = {name: g.lr for g in plan.groups for name in g.params}
    base = lrrules.load("lrrules:muon").vars["lr"]
    for name, p in model.named_parameters():
        if name.endswith(("c_fc.weight", "c_proj.weight")) and ".mlp." in name:
            rows, cols = p.shape  # stored (in, out)
            torch_factor = max(1, rows / cols) ** 0.5
            linear_factor = max(1, cols / rows) ** 0.5
            assert lrs[name] * torch_factor == pytest.approx(base * linear_factor, rel=1e-12)


@pytest.mark.parametrize("norm", ["weight_norm", "spectral_norm", "old_weight_norm"])
def test_a_parametrized_last_layer_is_the_head_with_its_bias(norm: str) -> None:
    # The last registered tensor is the parametrization's original1, under 'out.parametrizations.weight':
    # the head is the module 'out', bias included, as init finds it.
    from lrrules.params import collect
    from lrrules.starter import head_prefixes

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    wrap = {"weight_norm": torch.nn.utils.parametrizations.weight_norm,
            "spectral_norm": torch.nn.utils.parametrizations.spectral_norm,
            "old_weight_norm": torch.nn.utils.weight_norm}[norm]
    model[2] = wrap(model[2])
    infos = collect(model)[0]
    heads = {p.name for p in infos if "head" in dict(p.roles)}
    assert heads == {n for n, _ in model.named_parameters() if n.startswith("2.")}
    assert head_prefixes(infos, model) == ["2"]
