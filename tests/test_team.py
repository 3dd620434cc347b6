"""Rule files at team scale: extends, vars and training phases."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

import lrrules
from lrrules.cli import main
from lrrules.errors import RuleFileError
from lrrules.language import RuleSet

from .conftest import TinyNet

BASE = """\
version: 1
defaults: {lr: 0.1, weight_decay: 0.05, momentum: 0.9}
vars: {decay: 0.5}
layers: {by: module}
rules:
  - {name: head, match: "fc.*", lr_mult: 10}
  - {name: body, fallback: true, lr_mult: "decay ** depth"}
modifiers:
  - {name: no-decay, match: {ndim: 1}, weight_decay: 0}
  - {name: slow-norms, match: {module: "*Norm*"}, lr_mult: 0.5}
"""


def files(tmp_path: Path, **texts: str) -> dict[str, Path]:
    out = {}
    for name, text in texts.items():
        path = tmp_path / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        out[name] = path
    return out


def lrs(rules: RuleSet) -> dict[str, float]:
    return {a.name: a.lr for a in lrrules.resolve(rules, TinyNet()).params}  # type: ignore[misc]


# --- extends -------------------------------------------------------------------------------------


def test_child_inherits_and_replaces_by_name(tmp_path: Path) -> None:
    paths = files(tmp_path, base=BASE, child="""\
version: 1
extends: base.yaml
defaults: {lr: 0.2}
rules:
  - {name: head, match: "fc.*", lr_mult: 20}
modifiers:
  - {name: slow-norms, remove: true}
  - {name: frozen-stem, match: "conv1.*", freeze: true}
""")
    rules = lrrules.load(paths["child"])
    assert rules.defaults.lr == 0.2 and rules.defaults.weight_decay == 0.05 and rules.defaults.options == {"momentum": 0.9}
    assert [r.name for r in rules.rules] == ["head", "body"] and rules.rules[0].lr_mult == 20
    assert [m.name for m in rules.modifiers] == ["no-decay", "frozen-stem"]
    got = lrs(rules)
    assert got["fc.weight"] == pytest.approx(4.0)
    assert got["bn1.weight"] == pytest.approx(0.2 * 0.5**3), "no slow-norms any more"
    assert got["conv1.weight"] is None


def test_several_parents_apply_in_order_then_the_file(tmp_path: Path) -> None:
    paths = files(tmp_path, a="version: 1\ndefaults: {lr: 1.0}\nvars: {x: 1, y: 1}\n",
                  b="version: 1\ndefaults: {lr: 2.0}\nvars: {y: 2}\n",
                  c="version: 1\nextends: [a.yaml, b.yaml]\nvars: {x: 3}\n"
                    "rules:\n  - {name: all, match: '*', lr_mult: 'x * y'}\n")
    rules = lrrules.load(paths["c"])
    assert rules.defaults.lr == 2.0 and rules.vars == {"x": 3, "y": 2}
    assert all(lr == pytest.approx(12.0) for lr in lrs(rules).values())


def test_extends_is_relative_to_the_file_and_chains(tmp_path: Path) -> None:
    files(tmp_path, **{"shared/base": BASE, "shared/mid": "version: 1\nextends: base.yaml\nvars: {decay: 0.9}\n"})
    child = files(tmp_path, **{"exp/run": "version: 1\nextends: ../shared/mid.yaml\n"})["exp/run"]
    assert lrrules.load(child).vars == {"decay": 0.9}


def test_a_cycle_shows_the_chain_of_files(tmp_path: Path) -> None:
    paths = files(tmp_path, a="version: 1\nextends: b.yaml\n", b="version: 1\nextends: a.yaml\n")
    with pytest.raises(RuleFileError) as err:
        lrrules.load(paths["a"])
    error = err.value.errors[0]
    assert "'extends' makes a cycle" in error.message and "a.yaml -> " in error.message and "b.yaml -> " in error.message
    assert (Path(error.path).name, error.line) == ("b.yaml", 2)


def test_a_missing_parent_is_an_error_at_the_extends_line(tmp_path: Path) -> None:
    paths = files(tmp_path, child="version: 1\ndefaults: {lr: 1}\nextends: [nope.yaml]\n")
    with pytest.raises(RuleFileError) as err:
        lrrules.load(paths["child"])
    error = err.value.errors[0]
    assert "'nope.yaml', which is not a file" in error.message and error.line == 3


def test_an_error_in_a_parent_is_reported_in_the_parent(tmp_path: Path) -> None:
    paths = files(tmp_path, base="version: 1\ndefaults: {lr: 1}\nrules:\n  - {name: a, match: '*', lr_mul: 2}\n",
                  child="version: 1\nextends: base.yaml\nrules:\n  - {name: b, match: 'x', lr_mult: dpeth}\n")
    with pytest.raises(RuleFileError) as err:
        lrrules.load(paths["child"])
    where = {(Path(e.path).name, e.line) for e in err.value.errors}
    assert where == {("base.yaml", 4), ("child.yaml", 4)}


def test_remove_of_a_name_that_is_not_inherited_is_an_error(tmp_path: Path) -> None:
    paths = files(tmp_path, base=BASE, child="version: 1\nextends: base.yaml\nmodifiers:\n  - {name: nope, remove: true}\n")
    with pytest.raises(RuleFileError, match="nothing named 'nope' is inherited to remove"):
        lrrules.load(paths["child"])


def test_show_prints_the_flattened_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = files(tmp_path, base=BASE, child="version: 1\nextends: base.yaml\nmodifiers:\n  - {name: slow-norms, remove: true}\n")
    assert main(["show", str(paths["child"]), "--set", "decay=0.8"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert "extends" not in shown and shown["vars"] == {"decay": 0.8}
    assert [m["name"] for m in shown["modifiers"]] == ["no-decay"]
    assert RuleSet.model_validate(shown) == lrrules.load(paths["child"], overrides={"decay": 0.8})


def test_model_validate_refuses_extends_it_cannot_read() -> None:
    with pytest.raises(Exception, match="resolved by lrrules.load"):
        RuleSet.model_validate({"version": 1, "defaults": {"lr": 1}, "extends": "base.yaml"})


# --- vars ----------------------------------------------------------------------------------------


def test_vars_feed_formulas_and_can_be_overridden(tmp_path: Path) -> None:
    path = files(tmp_path, base=BASE)["base"]
    assert lrs(lrrules.load(path))["layer1.0.weight"] == pytest.approx(0.1 * 0.5**2)
    assert lrs(lrrules.load(path, overrides={"decay": 0.8}))["layer1.0.weight"] == pytest.approx(0.1 * 0.8**2)


def test_overriding_an_unknown_var_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    path = files(tmp_path, base=BASE)["base"]
    with pytest.raises(RuleFileError, match="cannot set 'decy': the file has no such var \\(did you mean 'decay'"):
        lrrules.load(path, overrides={"decy": 0.8})


def test_a_var_cannot_shadow_a_formula_name() -> None:
    with pytest.raises(RuleFileError, match="var 'depth' has the name of a formula variable"):
        lrrules.loads("version: 1\ndefaults: {lr: 1}\nvars: {depth: 2}\n")


def test_an_unknown_name_is_still_unknown_without_the_var() -> None:
    with pytest.raises(RuleFileError, match="unknown name 'decay'"):
        lrrules.loads("version: 1\ndefaults: {lr: 1}\nrules:\n  - {name: a, match: '*', lr_mult: 'decay'}\n")


def test_cli_set_changes_the_resolved_lrs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = files(tmp_path, base=BASE)["base"]
    main(["resolve", str(path), "--model", "resnet18", "--format", "json", "--set", "decay=0.25"])
    report = yaml.safe_load(capsys.readouterr().out)
    conv = next(p for p in report["params"] if p["name"] == "layer1.0.conv1.weight")
    assert conv["lr"] == pytest.approx(0.1 * 0.25**4)
    assert main(["resolve", str(path), "--model", "resnet18", "--set", "decay"]) == 2
    assert "--set takes name=number" in capsys.readouterr().err


# --- phases --------------------------------------------------------------------------------------

PHASED = """\
version: 1
defaults: {lr: 0.1}
optimizer: {type: SGD}
rules:
  - {name: head, match: "fc.*", lr_mult: 10}
  - {name: body, fallback: true}
phases:
  - {from_epoch: 0, freeze: {not: "fc.*"}}
  - {from_epoch: 2, unfreeze: "layer2.*"}
  - {from_epoch: 4, unfreeze: "*"}
"""


def test_phases_build_on_each_other_epoch_by_epoch() -> None:
    plan = lrrules.resolve(lrrules.loads(PHASED), TinyNet())
    everything = {a.name for a in plan.params}
    head = {"fc.weight", "fc.bias"}
    layer2 = {n for n in everything if n.startswith("layer2.")}
    assert plan.frozen_at(epoch=0) == everything - head
    assert plan.frozen_at(epoch=3) == everything - head - layer2
    assert plan.frozen_at(epoch=5) == frozenset()
    assert plan.frozen_at() == frozenset(), "no epoch given: no epoch phase has started"


def test_phased_parameters_stay_in_their_groups() -> None:
    plan = lrrules.resolve(lrrules.loads(PHASED), TinyNet())
    assert sum(len(g.params) for g in plan.groups) == len(plan.params)
    at0 = plan.at(epoch=0)
    assert [g.params for g in at0.groups] == [g.params for g in plan.groups]
    assert {a.name for a in at0.params if not a.trains} == plan.frozen_at(epoch=0)


def test_a_phase_needs_a_start_and_something_to_do() -> None:
    with pytest.raises(RuleFileError, match="either from_epoch or from_step"):
        lrrules.loads("version: 1\ndefaults: {lr: 1}\nphases:\n  - {freeze: '*'}\n")
    with pytest.raises(RuleFileError, match="needs 'freeze' or 'unfreeze'"):
        lrrules.loads("version: 1\ndefaults: {lr: 1}\nphases:\n  - {from_step: 10}\n")


def train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, plan: lrrules.Plan, epochs: range) -> None:
    for epoch in epochs:
        plan.apply_phase(epoch=epoch)
        for step in range(2):
            torch.manual_seed(1000 * epoch + step)
            optimizer.zero_grad()
            model(torch.randn(2, 3, 8, 8)).square().mean().backward()
            optimizer.step()


def test_a_resumed_phased_run_matches_an_uninterrupted_one() -> None:
    rules = lrrules.loads(PHASED.replace("type: SGD", "type: AdamW"))
    torch.manual_seed(0)
    straight = TinyNet()
    straight_opt = lrrules.build_optimizer(rules, straight)
    straight_plan = lrrules.resolve(rules, straight)
    train(straight, straight_opt, straight_plan, range(0, 5))

    torch.manual_seed(0)
    first = TinyNet()
    first_opt = lrrules.build_optimizer(rules, first)
    train(first, first_opt, lrrules.resolve(rules, first), range(0, 3))
    model_state, optimizer_state = copy.deepcopy(first.state_dict()), copy.deepcopy(first_opt.state_dict())

    resumed = TinyNet()
    resumed.load_state_dict(model_state)
    resumed_opt = lrrules.build_optimizer(rules, resumed)
    resumed_plan = lrrules.resolve(rules, resumed)
    lrrules.load_optimizer_state(resumed_opt, optimizer_state, resumed_plan)
    train(resumed, resumed_opt, resumed_plan, range(3, 5))

    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert torch.equal(a, b), name
    torch.manual_seed(0)
    assert not torch.equal(straight.conv1.weight, TinyNet().conv1.weight), "the stem trained once unfrozen"


def test_frozen_phase_parameters_do_not_move() -> None:
    rules = lrrules.loads(PHASED)
    model = TinyNet()
    optimizer = lrrules.build_optimizer(rules, model)
    before = copy.deepcopy(model.state_dict())
    train(model, optimizer, lrrules.resolve(rules, model), range(0, 1))
    assert torch.equal(model.conv1.weight, before["conv1.weight"])
    assert not torch.equal(model.fc.weight, before["fc.weight"])


def test_resolve_explain_and_diff_at_an_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "phased.yaml"
    path.write_text(PHASED)
    assert main(["resolve", str(path), "--model", "resnet18", "--epoch", "2"]) == 0
    out = capsys.readouterr().out
    assert "frozen by phases at epoch 2: 45 tensors (they keep their groups)" in out
    main(["explain", str(path), "layer2.0.conv1.weight", "--model", "resnet18", "--epoch", "0"])
    out = capsys.readouterr().out
    assert "phase 0 (from epoch 0) freezes it" in out and "phase 1 (from epoch 2) unfreezes it" in out
    assert "frozen by the phases at epoch 0" in out
    assert main(["diff", str(path), str(path), "--model", "resnet18", "--epoch", "1"]) == 0


def test_lightning_callback_applies_the_phase_each_epoch() -> None:
    pytest.importorskip("lightning")
    from lrrules.lightning import phase_callback

    plan = lrrules.resolve(lrrules.loads(PHASED), model := TinyNet())

    class Trainer:
        current_epoch = 2

    phase_callback(plan).on_train_epoch_start(Trainer(), None)
    assert not model.conv1.weight.requires_grad and model.layer2[0].weight.requires_grad
