"""Handing out a plan's tensors: every tensor once, through any wrapper, and never a tensor the model
no longer holds; build hands out the same groups as param_groups."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

import lrrules
from lrrules.errors import LrrulesError

from .conftest import TiedLM, TinyNet

RULES = ("version: 1\ndefaults: {lr: 0.1, weight_decay: 0.05}\nunmatched: defaults\n"
         "rules:\n  - {name: fc, match: 'fc.*', lr_mult: 10}\n"
         "modifiers:\n  - {name: no-decay, match: {ndim: 1}, weight_decay: 0}\n")


def _inner_wrappers(model: nn.Module) -> nn.Module:
    model.layer1 = checkpoint_wrapper(model.layer1)  # type: ignore[assignment]
    model.layer2 = torch.compile(model.layer2)  # type: ignore[assignment]
    return model


WRAPS: list[Callable[[nn.Module], nn.Module]] = [
    lambda m: m, torch.compile, nn.DataParallel, lambda m: torch.compile(nn.DataParallel(m)), _inner_wrappers,
]


@pytest.mark.parametrize("wrap", WRAPS, ids=["bare", "compile", "DataParallel", "compile+DataParallel", "inner"])
def test_param_groups_hand_out_every_tensor_once_through_any_wrapper(tiny: TinyNet,
                                                                     wrap: Callable[[nn.Module], nn.Module]) -> None:
    model = wrap(tiny)
    groups = lrrules.resolve(lrrules.loads(RULES), model).param_groups()
    handed = [id(p) for g in groups for p in g["params"]]
    assert sorted(handed) == sorted({id(p) for p in model.parameters()})


@pytest.mark.parametrize("wrap", WRAPS, ids=["bare", "compile", "DataParallel", "compile+DataParallel", "inner"])
def test_a_tensor_replaced_inside_a_wrapper_is_refused(tiny: TinyNet, wrap: Callable[[nn.Module], nn.Module]) -> None:
    model = wrap(tiny)
    plan = lrrules.resolve(lrrules.loads(RULES), model)
    tiny.fc = nn.Linear(tiny.fc.in_features, tiny.fc.out_features)
    with pytest.raises(LrrulesError, match="after the plan was resolved"):
        plan.param_groups()


def test_a_tied_tensor_is_handed_out_once(tied: TiedLM) -> None:
    groups = lrrules.resolve(lrrules.loads(RULES), tied).param_groups()
    handed = [id(p) for g in groups for p in g["params"]]
    assert len(handed) == len(set(handed)) == len({id(p) for p in tied.parameters()})


@pytest.mark.parametrize("make", [lambda: TinyNet(), lambda: TiedLM()], ids=["tiny", "tied"])
def test_build_gives_the_groups_param_groups_gives(make: Callable[[], nn.Module]) -> None:
    model = make()
    rules = lrrules.loads(RULES)
    optimizer, plan = lrrules.build(rules, model)
    expected = plan.param_groups()
    assert len(optimizer.param_groups) == len(expected)
    for got, want in zip(optimizer.param_groups, expected):
        assert [id(p) for p in got["params"]] == [id(p) for p in want["params"]]
        assert (got["lr"], got["weight_decay"], got["name"]) == (want["lr"], want["weight_decay"], want["name"])
