"""The plan as data: its report, its param groups, and the differences between two plans."""

from __future__ import annotations

import json

import pytest

import lrrules
from lrrules.errors import PlanProblemsError
from lrrules.params import ParamInfo
from lrrules.plan import diff_plans
from lrrules.resolver import resolve_params

PARAMS = [ParamInfo("a.weight", (2, 2), "Linear", True, 0), ParamInfo("a.bias", (2,), "Linear", True, 1),
          ParamInfo("b.weight", (2, 2), "Linear", True, 2)]


def plan(text: str, params: list[ParamInfo] = PARAMS) -> lrrules.Plan:
    return resolve_params(lrrules.loads("version: 1\ndefaults: {lr: 0.1, momentum: 0.9}\n" + text), params)


def test_diff_lists_each_changed_setting_of_each_parameter() -> None:
    old = plan("rules:\n  - {name: all, match: '*'}\n")
    new = plan("rules:\n  - {name: all, match: '*'}\nmodifiers:\n"
               "  - {name: m, match: 'a.*', lr_mult: 2, options: {momentum: 0.5}}\n"
               "  - {name: f, match: 'b.*', freeze: true}\n")
    changes = [(c.param, c.setting, c.old, c.new) for c in diff_plans(old, new)]
    assert changes == [
        ("a.weight", "lr", 0.1, 0.2), ("a.weight", "options.momentum", 0.9, 0.5),
        ("a.bias", "lr", 0.1, 0.2), ("a.bias", "options.momentum", 0.9, 0.5),
        ("b.weight", "status", "trainable", "frozen"),
    ]
    assert diff_plans(old, old) == []


def test_diff_shows_parameters_only_one_plan_has() -> None:
    old = plan("rules:\n  - {name: all, match: '*'}\n", PARAMS[:2])
    new = plan("rules:\n  - {name: all, match: '*'}\n", PARAMS[1:])
    changes = [(c.param, c.setting, c.old, c.new) for c in diff_plans(old, new)]
    assert changes == [("b.weight", "status", "absent", "trainable"), ("a.weight", "status", "trainable", "absent")]


def test_param_groups_need_tensors_and_no_problems() -> None:
    with pytest.raises(PlanProblemsError, match="resolved from names only"):
        plan("rules:\n  - {name: all, match: '*'}\n").param_groups()
    with pytest.raises(PlanProblemsError, match="1 problem"):
        plan("rules:\n  - {name: w, match: '*.weight'}\n").param_groups()


def test_apply_freeze_on_a_plan_without_tensors_raises_as_apply_phase_does() -> None:
    names_only = plan("rules:\n  - {name: all, match: '*', freeze: true}\n")
    for apply in (names_only.apply_freeze, names_only.apply_phase):
        with pytest.raises(PlanProblemsError, match="resolved from names only"):
            apply()


def test_report_is_plain_json_with_every_part() -> None:
    p = plan("rules:\n  - {name: all, match: '*', lr_mult: '2 if ndim == 1 else 1'}\n")
    report = json.loads(json.dumps(p.to_dict()))
    assert [g["lr"] for g in report["groups"]] == [0.1, 0.2]
    assert report["params"][1]["steps"] == [{"entry": "all", "setting": "lr_mult", "formula": "2 if ndim == 1 else 1",
                                             "variables": {"ndim": 1}, "value": 2.0}]
    assert report["base_options"] == {"momentum": 0.9} and report["ok"] is True


def _blocks(count: int) -> list[ParamInfo]:
    names = [f"blocks.{b}.{part}" for b in range(count) for part in ("fc.weight", "fc.bias", "norm.weight")]
    return [ParamInfo(n, (4, 4) if n.endswith("fc.weight") else (4,), None, True, i) for i, n in enumerate(names)]


def test_each_parameter_gets_its_rule_layer_captures_and_lr() -> None:
    rules = lrrules.loads("version: 1\ndefaults: {lr: 0.1, weight_decay: 0.05}\nlayers: {by: module, level: 2}\n"
                          "rules:\n  - {name: early, match: {regex: '^blocks\\.(?P<b>[0-4])\\.'}, lr_mult: '0.5 ** b'}\n"
                          "  - {name: rest, fallback: true, lr_mult: 2}\n"
                          "modifiers:\n  - {name: no-decay, match: {ndim: 1}, weight_decay: 0}\n")
    params = _blocks(100)
    plan = resolve_params(rules, params)
    # by hand: blocks 0-4 give one group per block and ndim (decay or not), the rest one per ndim
    assert len(plan.groups) == 5 * 2 + 2
    for a, info in zip(plan.params, params):
        b = int(info.name.split(".")[1])
        assert (a.name, a.shape, a.index, a.layer) == (info.name, info.shape, info.index, b)
        assert a.rule == ("early" if b < 5 else "rest") and a.matched_as == (info.name if b < 5 else None)
        assert a.lr == pytest.approx(0.1 * (0.5 ** b if b < 5 else 2))
        assert a.weight_decay == (0.05 if info.name.endswith("fc.weight") else 0)
        assert dict(a.captures) == ({"b": b} if b < 5 else {})
    assert plan.infos == tuple(params)


def test_a_copied_plan_equals_the_original_and_holds_no_tensors() -> None:
    import copy
    import pickle

    from torch import nn

    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    plan = lrrules.resolve(lrrules.loads("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: first, match: '0.*'}\n"
                         "  - {name: rest, fallback: true, freeze: true}\n"), model)
    assert [a.status for a in plan.params] == ["trainable", "trainable", "frozen", "frozen"]
    for copied in (pickle.loads(pickle.dumps(plan)), copy.deepcopy(plan)):
        assert copied == plan and copied.params == plan.params and copied.to_dict() == plan.to_dict()
        assert copied.fingerprint == plan.fingerprint
        with pytest.raises(PlanProblemsError, match="resolved from names only"):
            copied.param_groups()
