"""The ratios between groups hold through a schedule, for torch's schedulers and timm's."""

from __future__ import annotations

import pytest
import torch
from timm.scheduler import CosineLRScheduler

import lrrules

from .conftest import TinyNet

RULES = """
version: 1
defaults: {lr: 0.01}
rules:
  - {name: head, match: "fc.*", lr_mult: 10}
  - {name: stages, match: {regex: '^layer(?P<s>\\d)'}, lr_mult: "0.5 ** (2 - s)"}
  - {name: stem, fallback: true, lr_mult: 0.1}
"""


def setup() -> tuple[torch.optim.Optimizer, list[float]]:
    model = TinyNet()
    plan = lrrules.resolve(lrrules.loads(RULES), model)
    return torch.optim.SGD(plan.param_groups(), lr=0.01), plan.group_lrs()


def assert_ratios(optimizer: torch.optim.Optimizer, planned: list[float]) -> None:
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert len(set(planned)) == 4
    assert [lr / lrs[0] for lr in lrs] == pytest.approx([p / planned[0] for p in planned], rel=1e-9)


def step(optimizer: torch.optim.Optimizer, scheduler, n: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(n):
        optimizer.step()
        scheduler.step()


def test_lambda_lr_keeps_the_ratios() -> None:
    optimizer, planned = setup()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.9**epoch)
    step(optimizer, scheduler, 5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(planned[0] * 0.9**5)
    assert_ratios(optimizer, planned)


def test_one_cycle_takes_the_per_group_max_lr_list() -> None:
    optimizer, planned = setup()
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=planned, total_steps=20)
    step(optimizer, scheduler, 7)
    assert_ratios(optimizer, planned)
    assert optimizer.param_groups[-1]["lr"] < planned[-1]


def test_cosine_annealing_keeps_the_ratios() -> None:
    optimizer, planned = setup()
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    step(optimizer, scheduler, 4)
    assert_ratios(optimizer, planned)


def test_timm_cosine_scheduler_keeps_the_ratios() -> None:
    optimizer, planned = setup()
    scheduler = CosineLRScheduler(optimizer, t_initial=10, warmup_t=2, warmup_lr_init=1e-6)
    for epoch in range(1, 6):
        optimizer.step()
        scheduler.step(epoch)
    assert_ratios(optimizer, planned)
    assert [g["lr"] for g in optimizer.param_groups] != pytest.approx(planned)


def test_timm_cosine_scheduler_with_timm_style_groups() -> None:
    model = TinyNet()
    plan = lrrules.resolve(lrrules.loads(RULES), model)
    optimizer = torch.optim.SGD(plan.param_groups(lr_scale=True), lr=0.01)
    scheduler = CosineLRScheduler(optimizer, t_initial=10)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(plan.group_lrs())
    scheduler.step(3)
    assert_ratios(optimizer, plan.group_lrs())
