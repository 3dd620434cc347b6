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
from lrrules.resolver import resolve_params

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
    plan = lrrules.resolve(rules, tiny)
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
    groups = lrrules.resolve(rules, tiny).param_groups(lr_scale=True)
    assert [(g["lr"], g["lr_scale"]) for g in groups] == [(0.01, 0.5), (0.01, 10.0)]


def test_tied_weight_goes_into_one_group_once(tied: TiedLM) -> None:
    rules = lrrules.loads("version: 1\ndefaults: {lr: 0.01}\nrules:\n  - {name: all, match: '*'}\n")
    plan = lrrules.resolve(rules, tied)
    assert plan.params[0].aliases == ("head.weight",)
    torch.optim.SGD(plan.param_groups())  # torch refuses a tensor in two groups


def test_plan_is_immutable_and_its_report_is_json(tiny: TinyNet) -> None:
    plan = lrrules.resolve(lrrules.loads("version: 1\ndefaults: {lr: 0.01}\nrules:\n  - {name: all, match: '*'}\n"), tiny)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.groups = ()  # type: ignore[misc]
    report = json.loads(json.dumps(plan.to_dict()))
    assert set(report) >= {"groups", "params", "unmatched", "conflicts", "frozen", "unused_rules"}
    first = report["params"][0]
    assert set(first) >= {"name", "shape", "group", "rule", "modifiers", "layer", "lr", "weight_decay"}


def test_resolving_twice_gives_equal_plans(tiny: TinyNet) -> None:
    rules = lrrules.load("examples/resnet18-discriminative.yaml")
    assert lrrules.resolve(rules, tiny).to_dict() == lrrules.resolve(rules, tiny).to_dict()


# --- the resolver against a straightforward one ------------------------------------------------------
#
# The resolver indexes its matchers and settles each distinct input once. This reference does neither:
# every rule is tried on every name, every parameter's formulas are evaluated on their own, and the
# groups are made by a plain loop, so a shortcut that changes any parameter's outcome shows here.

TIED_PREFIXES = ["embed", "head", "blocks.0.attn", "blocks.1.attn", "blocks.2.norm", "norm"]
FORMULAS = ["0.5 ** depth", "1 + layer", "0.1 * ndim", "1 / (1 + index)", "dim0 / 3", "fan_in / (1 + fan_out)",
            "num_tensors / 10", "0.9 ** (num_layers - layer)"]


@st.composite
def tied_models(draw: Any) -> list[ParamInfo]:
    prefixes = draw(st.lists(st.sampled_from(TIED_PREFIXES), min_size=1, max_size=6, unique=True))
    infos: list[ParamInfo] = []
    for prefix in prefixes:
        for leaf in draw(st.lists(st.sampled_from(["weight", "bias"]), min_size=1, max_size=2, unique=True)):
            shape = (3,) if leaf == "bias" else tuple(draw(st.lists(st.integers(1, 4), min_size=2, max_size=3)))
            module = "LayerNorm" if "norm" in prefix else "Linear"
            infos.append(ParamInfo(f"{prefix}.{leaf}", shape, module, draw(st.integers(0, 7)) > 0, len(infos)))
    if len(infos) > 1 and draw(st.booleans()):  # a tensor under two names: the second's name becomes an alias
        first, second = draw(st.lists(st.integers(0, len(infos) - 1), min_size=2, max_size=2, unique=True))
        infos[first] = infos[first]._replace(aliases=(infos[second].name,))
        infos = [p._replace(index=i) for i, p in enumerate(p for k, p in enumerate(infos) if k != second)]
    return infos


@st.composite
def formula_files(draw: Any) -> dict[str, Any]:
    values = st.fixed_dictionaries({}, optional={"lr_mult": st.sampled_from([0.5, 2, *FORMULAS]),
                                                 "weight_decay": st.sampled_from([0, 0.1, *FORMULAS])})
    mod_values = st.one_of(st.fixed_dictionaries({}, optional={"lr_mult": st.sampled_from([0.5, *FORMULAS]),
                                                               "weight_decay_mult": st.sampled_from([0.5, *FORMULAS])}),
                           st.fixed_dictionaries({"lr": st.sampled_from([0.01, 0.02])}))
    rules = []
    for i in range(draw(st.integers(0, 4))):
        rule: dict[str, Any] = {"name": f"r{i}", "match": draw(MATCHERS)}
        rule.update({"freeze": True} if draw(st.integers(0, 6)) == 0 else draw(values))
        rules.append(rule)
    if draw(st.booleans()):
        rules.append({"name": "rest", "fallback": True, **draw(values)})
    modifiers = []
    for i in range(draw(st.integers(0, 3))):
        modifier = {"name": f"m{i}", "match": draw(MATCHERS), **draw(mod_values)}
        if draw(st.integers(0, 8)) == 0:
            modifier = {"name": f"m{i}", "match": modifier["match"], "freeze": True}
        modifiers.append(modifier)
    for entry in rules + modifiers:
        if entry.get("match") == {"regex": r"^blocks\.(?P<i>\d)\."} and "freeze" not in entry and draw(st.booleans()):
            entry.pop("lr", None)
            entry["lr_mult"] = "0.5 ** i + 1 / (1 + i)"
    return {"version": 1, "defaults": {"lr": 0.1, "weight_decay": 0.05},
            "layers": draw(st.sampled_from([{"by": "tensor"}, {"by": "module", "level": 1},
                                            {"by": "module", "level": 2}])),
            "unmatched": draw(st.sampled_from(["error", "defaults"])), "rules": rules, "modifiers": modifiers}


def straightforward(rules: RuleSet, params: list[ParamInfo]) -> dict[str, tuple[Any, ...]]:
    """Each parameter's outcome, worked out on its own: (status,) or ("trainable", rule, modifiers,
    captures, lr, lr_scale, weight_decay)."""
    from lrrules.formula import Formula
    from lrrules.layers import assign
    from lrrules.matching import compile_matcher

    layers, num_layers = assign(rules.layers, params)
    claiming = [(r, compile_matcher(r.match)) for r in rules.rules if not r.fallback]
    fallback = next((r for r in rules.rules if r.fallback), None)
    modifiers = sorted(((m, compile_matcher(m.match)) for m in rules.modifiers), key=lambda x: x[0].name)
    out: dict[str, tuple[Any, ...]] = {}
    for p in params:
        if not p.requires_grad:
            out[p.name] = ("frozen",)
            continue
        views = [p._replace(name=n) for n in p.names]
        claims: dict[str, Any] = {}
        mods: dict[str, Any] = {}
        for view in views:
            for r, matcher in claiming:
                if (caps := matcher.match(view)) is not None:
                    claims.setdefault(r.name, (r, caps))
            for m, matcher in modifiers:
                if (caps := matcher.match(view)) is not None:
                    mods.setdefault(m.name, (m, caps))
        mods = dict(sorted(mods.items()))  # modifiers apply in name order, whichever name they matched
        if len(claims) > 1:
            out[p.name] = ("conflict",)
            continue
        claim = next(iter(claims.values()), None) or ((fallback, {}) if fallback else None)
        if claim is None and rules.unmatched == "error":
            out[p.name] = ("unmatched",)
            continue
        chosen = [claim, *mods.values()] if claim else list(mods.values())
        if any(e.freeze for e, _ in chosen):
            out[p.name] = ("frozen",)
            continue
        env: dict[str, Any] = {"base_lr": 0.1, "base_weight_decay": 0.05, "num_layers": num_layers, "index": p.index,
                               "num_tensors": len(params), "ndim": p.ndim, "numel": p.numel, "fan_in": p.fan_in,
                               "fan_out": p.fan_out, **{f"dim{k}": d for k, d in enumerate(p.shape)}}
        if layers[p.index] is not None:
            env.update(layer=layers[p.index], depth=num_layers - 1 - layers[p.index])

        def value(raw: Any, caps: dict[str, Any]) -> Any:
            return raw.evaluate({**env, **caps}) if isinstance(raw, Formula) else raw

        scale, absolute, wd = 1.0, None, 0.05
        if claim is not None:
            spec, caps = claim
            scale = value(spec.lr_mult, caps) if spec.lr_mult is not None else 1.0
            wd = value(spec.weight_decay, caps) if spec.weight_decay is not None else 0.05
        lr_mult = wd_mult = 1.0
        set_lr: set[Any] = set()
        for spec, caps in mods.values():
            lr_mult *= value(spec.lr_mult, caps) if spec.lr_mult is not None else 1.0
            wd_mult *= value(spec.weight_decay_mult, caps) if spec.weight_decay_mult is not None else 1.0
            if spec.lr is not None:
                set_lr.add(value(spec.lr, caps))
        if len(set_lr) > 1:
            out[p.name] = ("conflict",)
            continue
        absolute = next(iter(set_lr), None)
        # As the language defines them: the final lr, and lr_scale its ratio to defaults.lr.
        lr_scale = absolute * lr_mult / 0.1 if absolute is not None else scale * lr_mult
        lr = absolute * lr_mult if absolute is not None else 0.1 * lr_scale
        captures = {k: v for _, caps in chosen for k, v in caps.items()}
        out[p.name] = ("trainable", claim[0].name if claim else None, tuple(mods), captures, lr, lr_scale,
                       wd * wd_mult)
    return out


@settings(max_examples=200, deadline=None)
@given(tied_models(), formula_files())
def test_the_resolver_gives_what_a_straightforward_loop_gives(params: list[ParamInfo], data: dict[str, Any]) -> None:
    rules = RuleSet.model_validate(data)
    try:
        expected = straightforward(rules, params)
    except lrrules.LrrulesError:  # a formula that cannot be evaluated for some parameter (no dim2 ...)
        with pytest.raises(lrrules.LrrulesError):
            resolve_params(rules, params)
        return
    plan = resolve_params(rules, params)
    for row in plan.params:
        want = expected[row.name]
        assert row.status == want[0], row.name
        if row.status == "trainable":
            assert (row.rule, row.modifiers, dict(row.captures)) == want[1:4], row.name
            assert (row.lr, row.lr_scale, row.weight_decay) == want[4:], row.name
    # One group per distinct setting, in order of first appearance, each its parameters in model order.
    groups: dict[tuple[float, ...], list[str]] = {}
    for name, want in expected.items():
        if want[0] == "trainable":
            groups.setdefault(want[4:], []).append(name)
    assert [list(g.params) for g in plan.groups] == list(groups.values())


def test_group_names_stay_unique_and_numbered_when_a_rule_name_looks_like_a_numbered_one() -> None:
    from lrrules.resolver import group_name

    taken: set[str] = set()
    last: dict[str, int] = {}
    names = [group_name(("r",), taken, last), group_name(("r#3",), taken, last),
             group_name(("r",), taken, last), group_name(("r",), taken, last), group_name(("r",), taken, last)]
    # Written out by hand: 'r#3' is the name of a rule, so the third group of 'r' skips it.
    assert names == ["r", "r#3", "r#2", "r#4", "r#5"]
    plain: set[str] = set()
    assert [group_name(n, plain) for n in [("r",), ("r#3",), ("r",), ("r",), ("r",)]] == names
