"""Issue 20, the language gaps the recipes hit: text option values, `where:` reading vars, negative
options, and a `by: patterns` layering the user listed."""

from __future__ import annotations

import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lrrules
from lrrules.errors import RuleFileError
from lrrules.vocabulary import VARIABLES
from lrrules.resolver import resolve


def _rules(body: str, head: str = "") -> lrrules.RuleSet:
    return lrrules.loads(f"version: 1\n{head}defaults: {{lr: 0.1}}\n{body}", path="r.yaml")


def _options(plan: lrrules.Plan) -> dict[str, dict]:
    return {r.name: r.options for r in plan.params if r.lr is not None}


# --- a word in options is the option's value -------------------------------------------------------


@pytest.mark.parametrize("word", ["std", "qr", "cholesky_qr", "adamw", "rcqr", "svd-fast"])
def test_a_word_in_a_rules_options_is_the_options_value(word: str) -> None:
    rules = _rules(f"rules:\n  - {{name: all, match: '*', options: {{proj_type: {word}}}}}\n")
    got = _options(resolve(rules, nn.Linear(2, 3)))
    assert got == {"weight": {"proj_type": word}, "bias": {"proj_type": word}}


def test_a_word_in_a_modifiers_options_is_the_options_value() -> None:
    rules = _rules("rules:\n  - {name: all, match: '*'}\n"
                   "modifiers:\n  - {name: dion, match: weight, options: {algorithm: dion}}\n")
    assert _options(resolve(rules, nn.Linear(2, 3)))["weight"] == {"algorithm": "dion"}


def test_a_word_close_to_a_variable_stays_a_formula_and_says_so() -> None:
    line = "  - {name: all, match: '*', options: {momentum: dpeth}}"
    with pytest.raises(RuleFileError) as info:
        _rules(f"rules:\n{line}\n")
    error = info.value.errors[0]
    assert "did you mean 'depth'" in error.message and (error.line, error.col) == (4, line.index("dpeth") + 1)


def test_a_word_naming_a_variable_or_var_is_a_formula() -> None:
    rules = _rules("rules:\n  - {name: all, match: '*', options: {a: ndim, b: mom}}\n", head="vars: {mom: 0.9}\n")
    assert _options(resolve(rules, nn.Linear(2, 3)))["weight"] == {"a": 2.0, "b": 0.9}


@settings(max_examples=60, deadline=None)
@given(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True))
def test_any_word_is_a_value_or_a_formula_over_known_names(word: str) -> None:
    try:
        rules = _rules(f"rules:\n  - {{name: all, match: '*', options: {{o: '{word}'}}}}\n")
    except RuleFileError as exc:  # a word close to a variable: the formula's error, placed
        assert exc.errors[0].line == 4 and "did you mean" in exc.errors[0].message
        return
    value = _options(resolve(rules, nn.Linear(2, 3)))["weight"]["o"]
    assert value == word or word in VARIABLES or word in ("pi", "e")


# --- `where:` reads vars -----------------------------------------------------------------------


def test_where_reads_vars_as_set_on_the_command_line() -> None:
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 8, 1))
    text = ("version: 1\nvars: {dw: 4}\ndefaults: {lr: 0.1}\nrules:\n"
            "  - {name: depthwise, match: {module: Conv2d, where: 'groups == dw'}, lr_mult: 2}\n"
            "  - {name: rest, fallback: true}\n")
    lrs = {r.name: r.lr for r in resolve(lrrules.loads(text), model).params}
    assert lrs == {"0.weight": 0.2, "0.bias": 0.2, "1.weight": 0.1, "1.bias": 0.1}
    lrs = {r.name: r.lr for r in resolve(lrrules.loads(text, overrides={"dw": 1}), model).params}
    assert lrs == {"0.weight": 0.1, "0.bias": 0.1, "1.weight": 0.2, "1.bias": 0.2}


def test_a_where_reading_vars_survives_pickle() -> None:
    rules = _rules("rules:\n  - {name: big, match: {where: 'numel > n'}}\n  - {name: rest, fallback: true}\n",
                   head="vars: {n: 5}\n")
    copy = pickle.loads(pickle.dumps(rules))
    assert copy == rules
    by = {r.name: r.rule for r in resolve(copy, nn.Linear(2, 3)).params}
    assert by == {"weight": "big", "bias": "rest"}


# --- negative options, never negative rates ------------------------------------------------------


def test_adafactors_negative_beta2_decay_builds() -> None:
    model = nn.Linear(4, 3)
    rules = _rules("optimizer: {type: Adafactor}\nrules:\n"
                   "  - {name: all, match: '*', options: {beta2_decay: -0.8}}\n")
    optimizer, _ = lrrules.build(rules, model)
    assert [g["beta2_decay"] for g in optimizer.param_groups] == [-0.8]
    reference = torch.optim.Adafactor(model.parameters(), lr=0.1, beta2_decay=-0.8)
    assert reference.param_groups[0]["beta2_decay"] == optimizer.param_groups[0]["beta2_decay"]


@pytest.mark.parametrize("value", ["-0.8", "'-0.5 * depth - 0.1'"])
def test_options_may_be_negative_numbers_and_formulas(value: str) -> None:
    rules = _rules(f"rules:\n  - {{name: all, match: '*', options: {{beta2_decay: {value}}}}}\n")
    got = _options(resolve(rules, nn.Linear(2, 3)))["weight"]["beta2_decay"]
    assert got < 0


@pytest.mark.parametrize("setting", ["lr: -0.1", "lr_mult: '-2'", "weight_decay: -1", "weight_decay_mult: '0 - 1'",
                                     "lr: '-1 * ndim'"])
def test_lr_and_weight_decay_stay_at_least_zero(setting: str) -> None:
    with pytest.raises(RuleFileError) as info:
        resolve(_rules(f"rules:\n  - {{name: all, match: '*', {setting}}}\n"), nn.Linear(2, 3))
    assert info.value.errors[0].line == 4 and ">= 0" in info.value.errors[0].message


def test_a_negative_option_torch_refuses_is_still_refused() -> None:
    with pytest.raises(lrrules.LrrulesError, match="momentum"):
        lrrules.build(_rules("optimizer: {type: SGD}\nrules:\n  - {name: all, match: '*', options: {momentum: -0.9}}\n"),
                      nn.Linear(2, 3))


# --- a listed layering is not second-guessed -----------------------------------------------------------


def test_two_listed_pattern_layers_are_not_warned_about() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    rules = _rules("layers: {by: patterns, patterns: ['0.*', '*']}\n"
                   "rules:\n  - {name: all, match: '*', lr_mult: '0.5 ** depth'}\n")
    plan = resolve(rules, model)
    assert plan.cautions == () and plan.num_layers == 2
    assert {r.name: r.lr for r in plan.params}["0.weight"] == 0.05


def test_a_coarse_computed_layering_is_still_warned_about() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    rules = _rules("layers: {by: module, level: 1}\nrules:\n  - {name: all, match: '*', lr_mult: '0.5 ** depth'}\n")
    wrapped = nn.Sequential(model)  # one top-level module: one layer
    assert any("layer" in c for c in resolve(rules, wrapped).cautions)
