"""Per-rule schedules (issue 13): lr_schedule formulas through lrrules.rule_scheduler in real loops."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import lrrules
from lrrules.errors import LrrulesError, RuleFileError
from lrrules.schedules import rule_lambdas

from .conftest import TinyNet

WARM = 4
RULES = f"""
version: 1
vars: {{warm: {WARM}}}
defaults: {{lr: 0.01, weight_decay: 0.01}}
rules:
  - {{name: head, match: "fc.*", lr_mult: 10, lr_schedule: "min(1, (step + 1) / warm)"}}
  - {{name: body, fallback: true, lr_schedule: "1 if step >= warm else 0"}}
"""


def head(name: str) -> bool:
    return name.startswith("fc.")


def rule_factor(name: str, step: int) -> float:
    """The file's two formulas, written out by hand."""
    return min(1, (step + 1) / WARM) if head(name) else (1.0 if step >= WARM else 0.0)


def batch(step: int) -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(step))


def test_the_head_warms_up_while_the_backbone_waits_in_a_real_loop() -> None:
    torch.manual_seed(0)
    model = TinyNet()
    reference = copy.deepcopy(model)
    optimizer, plan = lrrules.build(lrrules.loads(RULES), model)
    scheduler = lrrules.rule_scheduler(optimizer, plan)
    # The same training by hand: one AdamW, each group's lr set before every step.
    by_hand = torch.optim.AdamW([{"params": [dict(reference.named_parameters())[n] for n in g.params], "lr": g.lr}
                                 for g in plan.groups], weight_decay=0.01)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    for step in range(WARM + 2):
        for group, hand in zip(plan.groups, by_hand.param_groups):
            hand["lr"] = group.lr * rule_factor(group.params[0], step)
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([g["lr"] for g in by_hand.param_groups])
        for net, opt in ((model, optimizer), (reference, by_hand)):
            opt.zero_grad()
            net(batch(step)).square().mean().backward()
            opt.step()
        scheduler.step()
        if step < WARM:  # the backbone's lr is 0 so far: AdamW leaves it where it was
            assert all(torch.equal(p, start[n]) for n, p in model.named_parameters() if not head(n))
            assert not torch.equal(model.fc.weight, start["fc.weight"])
    assert not torch.equal(model.conv1.weight, start["conv1.weight"]), "the backbone trains after the wait"
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(a, b), name


def test_a_global_schedule_composes_by_multiplication() -> None:
    model = TinyNet()
    optimizer, plan = lrrules.build(lrrules.loads(RULES), model)
    total = 10
    cosine = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    scheduler = lrrules.rule_scheduler(optimizer, plan, total_steps=total, base=cosine)
    for step in range(total):
        expected = [g.lr * 0.5 * (1 + math.cos(math.pi * step / total)) * rule_factor(g.params[0], step)
                    for g in plan.groups]
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(expected, abs=1e-15)
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("formula", ["step / total_steps", "min(1, epoch / 2)", "0.5 ** step", "1 + step % 3"])
def test_each_group_follows_its_formula_and_the_others_keep_factor_one(formula: str) -> None:
    text = f"""
version: 1
defaults: {{lr: 0.1}}
rules:
  - {{name: head, match: "fc.*", lr_schedule: "{formula}"}}
  - {{name: body, fallback: true}}
"""
    plan = lrrules.resolve(lrrules.loads(text), TinyNet())
    total, per_epoch = 12, 5
    lambdas = rule_lambdas(plan, total_steps=total, steps_per_epoch=per_epoch)
    for step in range(total):
        env = {"step": step, "epoch": step // per_epoch, "total_steps": total, "min": min}
        want = eval(formula.replace("^", "**"), env)  # noqa: S307 - the test's own literal formulas
        for group, f in zip(plan.groups, lambdas):
            assert f(step) == pytest.approx(want if group.lr_schedule else 1.0)


def test_a_modifiers_schedule_replaces_the_rules_and_two_that_disagree_conflict() -> None:
    text = RULES + """modifiers:
  - {name: ramp-conv1, match: "conv1.*", lr_schedule: "min(1, step / 10)"}
"""
    plan = lrrules.resolve(lrrules.loads(text), TinyNet())
    assert {a.name: plan.groups[a.group].lr_schedule for a in plan.params}["conv1.weight"] == "min(1, step / 10)"
    clash = text + '  - {name: other, match: "conv1.*", lr_schedule: "1"}\n'
    plan = lrrules.resolve(lrrules.loads(clash), TinyNet())
    assert [(c.param, c.setting) for c in plan.conflicts] == [("conv1.weight", "lr_schedule")]


def test_schedule_errors_say_what_to_do() -> None:
    needs_total = RULES.replace("(step + 1) / warm", "step / total_steps")
    optimizer, plan = lrrules.build(lrrules.loads(needs_total), TinyNet())
    with pytest.raises(LrrulesError, match="pass total_steps"):
        lrrules.rule_scheduler(optimizer, plan)
    negative = RULES.replace("(step + 1) / warm", "1 - step")
    optimizer, plan = lrrules.build(lrrules.loads(negative), TinyNet())
    scheduler = lrrules.rule_scheduler(optimizer, plan)
    optimizer.step()
    scheduler.step()
    optimizer.step()
    with pytest.raises(LrrulesError, match="gives -1.0 at step 2"):
        scheduler.step()
    with pytest.raises(RuleFileError, match="stpe"):
        lrrules.loads(RULES.replace("step >= warm", "stpe >= warm"))
