"""build_optimizer: the optimizer the file names, with the groups the rules give, that trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lrrules
from lrrules.errors import OptimizerError, PlanProblemsError
from lrrules.optim import optimizer_class

from .conftest import TinyNet

RULES = """
version: 1
defaults: {{lr: 0.1, weight_decay: 0.0{extra}}}
{optimizer}
rules:
  - {{name: head, match: "fc.*", lr_mult: 10}}
  - {{name: stem, match: ["conv1.*", "bn1.*"], freeze: true}}
  - {{name: body, fallback: true}}
"""


def rules_file(tmp_path: Path, optimizer: str = "", extra: str = "") -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.format(optimizer=optimizer, extra=extra))
    return path


def test_default_optimizer_is_adamw_with_the_plans_groups(tmp_path: Path, tiny: TinyNet) -> None:
    optimizer = lrrules.build_optimizer(rules_file(tmp_path), tiny)
    assert type(optimizer) is torch.optim.AdamW
    lrs = {name: g["lr"] for g in optimizer.param_groups for name in g["param_names"]}
    assert lrs["fc.weight"] == pytest.approx(1.0) and lrs["layer1.0.weight"] == pytest.approx(0.1)
    assert "conv1.weight" not in lrs


def test_frozen_parameters_stop_requiring_grad(tmp_path: Path, tiny: TinyNet) -> None:
    lrrules.build_optimizer(rules_file(tmp_path), tiny)
    assert not tiny.conv1.weight.requires_grad and not tiny.bn1.bias.requires_grad
    assert tiny.fc.weight.requires_grad


def test_sgd_step_moves_each_parameter_by_its_own_lr(tmp_path: Path, tiny: TinyNet) -> None:
    optimizer = lrrules.build_optimizer(rules_file(tmp_path, "optimizer: {type: SGD}"), tiny)
    assert type(optimizer) is torch.optim.SGD
    before = {n: p.detach().clone() for n, p in tiny.named_parameters()}
    tiny(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    for name, lr in (("fc.weight", 1.0), ("layer2.0.weight", 0.1)):
        param = dict(tiny.named_parameters())[name]
        assert torch.allclose(param.detach(), before[name] - lr * param.grad, atol=1e-6)
    assert torch.equal(tiny.conv1.weight.detach(), before["conv1.weight"])


def test_options_from_defaults_reach_the_optimizer(tmp_path: Path, tiny: TinyNet) -> None:
    path = rules_file(tmp_path, "optimizer: {type: SGD}", ", momentum: 0.9, nesterov: true")
    optimizer = lrrules.build_optimizer(path, tiny)
    assert all(g["momentum"] == 0.9 and g["nesterov"] for g in optimizer.param_groups)


def test_timm_optimizer_names_work_where_torch_has_none(tmp_path: Path, tiny: TinyNet) -> None:
    optimizer = lrrules.build_optimizer(rules_file(tmp_path, "optimizer: {type: lamb}"), tiny)
    assert type(optimizer).__name__ == "Lamb"


def test_a_name_that_is_no_optimizer_is_refused_with_suggestions() -> None:
    with pytest.raises(OptimizerError, match="did you mean 'AdamW'"):
        optimizer_class("AdamWW")
    for not_an_optimizer in ("Optimizer", "lr_scheduler", "Tensor", "os"):
        with pytest.raises(OptimizerError, match="names no optimizer"):
            optimizer_class(not_an_optimizer)


def test_a_misspelt_option_is_refused_before_it_is_silently_ignored(tmp_path: Path, tiny: TinyNet) -> None:
    path = rules_file(tmp_path, "optimizer: {type: SGD}", ", momentun: 0.9")
    with pytest.raises(OptimizerError, match="'momentun' \\(in defaults\\) is not an option of SGD \\(did you mean 'momentum'"):
        lrrules.build_optimizer(path, tiny)
    assert tiny.conv1.weight.requires_grad, "nothing is frozen when the optimizer cannot be built"


def test_problems_stop_the_build_and_are_all_listed(tiny: TinyNet) -> None:
    rules = lrrules.loads("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: head, match: 'fc.*'}\n")
    with pytest.raises(PlanProblemsError) as err:
        lrrules.build_optimizer(rules, tiny)
    assert "11 problem(s)" in str(err.value) and "'conv1.weight' is claimed by no rule" in str(err.value)
    assert tiny.conv1.weight.requires_grad


def test_build_gives_the_plan_the_optimizer_holds(tmp_path: Path, tiny: TinyNet) -> None:
    optimizer, plan = lrrules.build(rules_file(tmp_path), tiny)
    held = [(g["param_names"], g["lr"], g["weight_decay"]) for g in optimizer.param_groups]
    assert held == [(list(g.params), g.lr, g.weight_decay) for g in plan.groups]
    names = {id(p): n for n, p in tiny.named_parameters()}
    assert [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups] == [list(g.params) for g in plan.groups]


def test_building_changes_nothing_the_plan_says(tmp_path: Path, tiny: TinyNet) -> None:
    before = lrrules.resolve(lrrules.load(rules_file(tmp_path)), TinyNet()).to_dict()
    built = lrrules.build(rules_file(tmp_path), tiny)
    assert built.plan.to_dict() == before
    # The stem is frozen by the rule, not reported as frozen in the model by a second resolution.
    assert {f.param: f.reason for f in built.plan.frozen} == {f["param"]: f["reason"] for f in before["frozen"]}
    assert not any(p.requires_grad for n, p in tiny.named_parameters() if n.startswith(("conv1", "bn1")))


def test_build_optimizer_gives_the_same_optimizer_as_build(tmp_path: Path, tiny: TinyNet) -> None:
    optimizer = lrrules.build_optimizer(rules_file(tmp_path), tiny)
    assert [g["param_names"] for g in optimizer.param_groups] == [
        list(g.params) for g in lrrules.build(rules_file(tmp_path), TinyNet()).plan.groups]


@pytest.mark.parametrize("several", [False, True])
@pytest.mark.parametrize("freezing", ["{name: all, fallback: true, freeze: true}", "{name: all, match: '*', freeze: true}"])
def test_a_file_that_freezes_everything_is_refused_naming_why_and_leaves_the_model_as_it_was(
        tiny: TinyNet, several: bool, freezing: str) -> None:
    # Torch alone says "optimizer got an empty parameter list", which names neither the file nor the rule.
    routed = "optimizers:\n  fast: {type: SGD, lr: 0.5}\n" if several else ""
    rules = lrrules.loads(f"version: 1\ndefaults: {{lr: 0.1}}\n{routed}rules:\n  - {freezing}\n")
    with pytest.raises(OptimizerError, match=r"nothing trains: all \d+ tensors are frozen \(frozen by 'all'\)"):
        lrrules.build(rules, tiny)
    assert all(p.requires_grad for p in tiny.parameters())
