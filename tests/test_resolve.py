"""Resolution as a whole: its invariants over random rule files and models, and real models."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lrrules
from lrrules.language import RuleSet
from lrrules.params import ParamInfo
from lrrules.resolve import resolve_params

from .conftest import TiedLM, TinyNet

PREFIXES = ["embed", "blocks.0.attn", "blocks.0.norm", "blocks.1.attn", "blocks.1.norm", "head", "norm"]
GLOBS = ["*", "blocks.*", "*.bias", "head.*", "embed.*", "*norm*", "blocks.1.*"]
MATCHERS = st.one_of(
    st.sampled_from(GLOBS),
    st.lists(st.sampled_from(GLOBS), min_size=1, max_size=2),
    st.builds(lambda n: {"ndim": n}, st.lists(st.integers(0, 2), min_size=1, max_size=2)),
    st.builds(lambda g: {"module": g}, st.sampled_from(["*Norm*", "Linear"])),
    st.builds(lambda g: {"not": g}, st.sampled_from(GLOBS)),
    st.just({"regex": r"^blocks\.(?P<i>\d)\."}),
)
VALUES = st.fixed_dictionaries({}, optional={
    "lr_mult": st.sampled_from([0.5, 2, "0.5 ** depth", "1 + layer"]),
    "weight_decay": st.sampled_from([0, 0.1, "0.01 * ndim"]),
})


@st.composite
def models(draw: Any) -> list[ParamInfo]:
    names = draw(st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=6, unique=True))
    infos = []
    for prefix in names:
        for leaf in draw(st.lists(st.sampled_from(["weight", "bias"]), min_size=1, max_size=2, unique=True)):
            ndim = 1 if leaf == "bias" else draw(st.integers(0, 2))
            module = "LayerNorm" if "norm" in prefix else "Linear"
            infos.append(ParamInfo(f"{prefix}.{leaf}", (3,) * ndim, module, True,
                                   len(infos)))
    frozen = draw(st.sets(st.integers(0, len(infos) - 1), max_size=2))
    return [p._replace(requires_grad=p.index not in frozen) for p in infos]


@st.composite
def rule_files(draw: Any) -> dict[str, Any]:
    rules = []
    for i in range(draw(st.integers(0, 4))):
        rule: dict[str, Any] = {"name": f"r{i}", "match": draw(MATCHERS)}
        if draw(st.integers(0, 5)) == 0:
            rule["freeze"] = True
        else:
            rule.update(draw(VALUES))
        rules.append(rule)
    if draw(st.booleans()):
        rules.append({"name": "rest", "fallback": True, **draw(VALUES)})
    modifiers = [{"name": f"m{i}", "match": draw(MATCHERS), **draw(VALUES)} for i in range(draw(st.integers(0, 3)))]
    for entry in rules + modifiers:  # a formula reading `i` needs the regex that captures it
        if "match" in entry and entry["match"] == {"regex": r"^blocks\.(?P<i>\d)\."} and draw(st.booleans()):
            entry.pop("freeze", None)
            entry["lr_mult"] = "0.5 ** i"
    return {
        "version": 1,
        "defaults": {"lr": 0.1, "weight_decay": 0.05},
        "layers": draw(st.sampled_from([{"by": "tensor"}, {"by": "module", "level": 1}, {"by": "module", "level": 2}])),
        "unmatched": draw(st.sampled_from(["error", "defaults"])),
        "rules": rules,
        "modifiers": modifiers,
    }


@settings(max_examples=250, deadline=None)
@given(models(), rule_files(), st.randoms(use_true_random=False))
def test_every_parameter_lands_in_exactly_one_place_whatever_the_order(
    params: list[ParamInfo], data: dict[str, Any], rnd: random.Random
) -> None:
    plan = resolve_params(RuleSet.model_validate(data), params)

    grouped = [n for g in plan.groups for n in g.params]
    assert len(grouped) == len(set(grouped)), "no parameter is in two groups"
    frozen = [f.param for f in plan.frozen]
    conflicting = [c.param for c in plan.conflicts]
    unmatched = [n for n in plan.unmatched if n not in grouped]
    everything = grouped + frozen + conflicting + unmatched
    assert sorted(everything) == sorted(p.name for p in params), "each parameter is in exactly one place"
    assert not set(frozen) & set(grouped)
    for p in params:
        if not p.requires_grad:
            assert p.name in frozen

    shuffled = dict(data, rules=rnd.sample(data["rules"], len(data["rules"])),
                    modifiers=rnd.sample(data["modifiers"], len(data["modifiers"])))
    assert resolve_params(RuleSet.model_validate(shuffled), params).to_dict() == plan.to_dict()


def test_param_groups_feed_a_torch_optimizer(tiny: TinyNet) -> None:
    rules = lrrules.loads(
        "version: 1\ndefaults: {lr: 0.01, weight_decay: 0.1, betas: [0.8, 0.9]}\n"
        "rules:\n  - {name: head, match: 'fc.*', lr_mult: 10}\n  - {name: rest, fallback: true}\n"
        "modifiers:\n  - {name: no-decay, match: {ndim: 1}, weight_decay: 0}\n"
    )
    plan = rules.resolve(tiny)
    groups = plan.param_groups()
    optimizer = torch.optim.AdamW(groups)
    named = dict(tiny.named_parameters())
    for group in optimizer.param_groups:
        assert [named[n] for n in group["param_names"]] == group["params"]
        assert "lr_scale" not in group, "a final lr with an lr_scale is scaled twice by timm's schedulers"
        assert group["betas"] == (0.8, 0.9)
    settings_of = {n: (g["lr"], g["weight_decay"]) for g in groups for n in g["param_names"]}
    assert settings_of["fc.weight"] == (pytest.approx(0.1), 0.1)
    assert settings_of["fc.bias"] == (pytest.approx(0.1), 0)
    assert settings_of["layer1.0.bias"] == (0.01, 0)
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_timm_style_groups_carry_the_base_lr_and_the_scale(tiny: TinyNet) -> None:
    rules = lrrules.loads("version: 1\ndefaults: {lr: 0.01}\nrules:\n  - {name: head, match: 'fc.*', lr_mult: 10}\n"
                          "  - {name: rest, fallback: true, lr_mult: 0.5}\n")
    groups = rules.resolve(tiny).param_groups(lr_scale=True)
    assert [(g["lr"], g["lr_scale"]) for g in groups] == [(0.01, 0.5), (0.01, 10.0)]


def test_tied_weight_goes_into_one_group_once(tied: TiedLM) -> None:
    rules = lrrules.loads("version: 1\ndefaults: {lr: 0.01}\nrules:\n  - {name: all, match: '*'}\n")
    plan = rules.resolve(tied)
    assert plan.params[0].aliases == ("head.weight",)
    torch.optim.SGD(plan.param_groups())  # torch refuses a tensor in two groups


def test_plan_is_immutable_and_its_report_is_json(tiny: TinyNet) -> None:
    plan = lrrules.loads("version: 1\ndefaults: {lr: 0.01}\nrules:\n  - {name: all, match: '*'}\n").resolve(tiny)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.groups = ()  # type: ignore[misc]
    report = json.loads(json.dumps(plan.to_dict()))
    assert set(report) >= {"groups", "params", "unmatched", "conflicts", "frozen", "unused_rules"}
    first = report["params"][0]
    assert set(first) >= {"name", "shape", "group", "rule", "modifiers", "layer", "lr", "weight_decay"}


def test_resolving_twice_gives_equal_plans(tiny: TinyNet) -> None:
    rules = lrrules.load("examples/resnet18-discriminative.yaml")
    assert rules.resolve(tiny).to_dict() == rules.resolve(tiny).to_dict()
