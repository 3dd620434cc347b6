"""The JSON Schema an editor checks a rule file with and `lrrules.load` give one verdict on every
value of a field's type (issue 24: `freeze: "yes"` passed the tool and failed the schema), and the
newcomer's spellings the language takes: options written on the single optimizer."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import lrrules
from lrrules.errors import RuleFileError
from lrrules.language import json_schema
from lrrules.vocabulary import RESERVED_OPTIONS

# Every field below holds a valid value here, and nothing in the document depends on another
# field's value, so a verdict on a document is the verdict on the one value that was replaced.
BASE: dict[str, Any] = {
    "version": 1, "vars": {"x": 1}, "defaults": {"lr": 0.1, "momentum": 0.9},
    "optimizer": {"type": "SGD", "nesterov": True}, "optimizers": {"adam": {"type": "AdamW", "eps": 1e-8}},
    "layers": {"by": "module", "level": 1}, "unmatched": "error",
    "rules": [{"name": "a", "match": {"glob": "*", "ndim": 2, "role": "hidden"},
               "options": {"momentum": 0.9}},
              {"name": "b", "fallback": True, "freeze": False}],
    "modifiers": [{"name": "m", "match": "*.bias", "freeze": True}],
    "phases": [{"from_epoch": 1, "unfreeze": "*"}],
}
FIELDS = [
    ("version",), ("vars",), ("vars", "x"), ("defaults", "lr"), ("defaults", "weight_decay"), ("defaults", "momentum"),
    ("optimizer",), ("optimizer", "type"), ("optimizer", "nesterov"), ("optimizers", "adam", "lr"),
    ("optimizers", "adam", "weight_decay"), ("optimizers", "adam", "eps"), ("optimizers", "adam", "group_keys"),
    ("layers", "by"), ("layers", "level"), ("unmatched",), ("rules", 0, "name"), ("rules", 0, "lr_mult"),
    ("rules", 0, "lr"), ("rules", 0, "weight_decay"), ("rules", 0, "options"), ("rules", 0, "options", "momentum"),
    ("rules", 0, "match", "glob"), ("rules", 0, "match", "ndim"), ("rules", 0, "match", "role"),
    ("rules", 1, "freeze"), ("modifiers", 0, "freeze"), ("phases", 0, "from_epoch"), ("phases", 0, "unfreeze"),
]
VALUES = [True, False, "yes", "no", "on", "true", 1, 0, 2, 1.0, 1.5, -1, 1e-3, "0.5", None, [], [1], [0.9, 0.99],
          ["x"], {}, {"a": 1}, "word", "", "*.bias"]
#: Where a string is a formula, what it means is the formula language's to judge, not the schema's.
FORMULAS = {"lr", "lr_mult", "weight_decay", "momentum"}
#: A phase needs one of two fields: the other missing is the phase's own check, not the field's.
EITHER = {("phases", 0, "from_epoch"), ("phases", 0, "unfreeze")}


VALIDATOR = jsonschema.Draft202012Validator(json_schema())


def _with(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    at: Any = doc
    for part in path[:-1]:
        at = at[part]
    at[path[-1]] = value
    return doc


def _loads(doc: dict[str, Any]) -> bool:
    try:
        lrrules.load(doc)
    except RuleFileError:
        return False
    return True


def test_the_base_document_is_valid_for_both() -> None:
    assert VALIDATOR.is_valid(BASE) and _loads(BASE)


@pytest.mark.parametrize("path", FIELDS, ids=lambda p: ".".join(map(str, p)))
def test_schema_and_tool_agree_on_every_value_of_a_field(path: tuple[str | int, ...]) -> None:
    disagree = []
    for value in VALUES:
        if isinstance(value, str) and value != "0.5" and path[-1] in FORMULAS and path[0] in ("rules", "defaults"):
            continue
        if value is None and path in EITHER:
            continue
        doc = _with(path, value)
        if VALIDATOR.is_valid(doc) != _loads(doc):
            disagree.append(f"{value!r}: schema {'accepts' if VALIDATOR.is_valid(doc) else 'refuses'}")
    assert not disagree


@pytest.mark.parametrize(("field", "value"), list(itertools.product(["freeze", "fallback"], ["yes", "true", 1, 0])))
def test_a_yes_no_field_takes_a_boolean_only_and_says_how_to_write_one(field: str, value: Any) -> None:
    text = f"version: 1\ndefaults: {{lr: 0.1}}\nrules:\n  - {{name: a, match: '*', {field}: {value!r}}}\n"
    with pytest.raises(RuleFileError) as caught:
        lrrules.loads(text, path="r.yaml")
    error = caught.value.errors[0]
    assert (error.loc, error.line, error.col) == (("rules", 0, field), 4, text.splitlines()[3].index(repr(value)) + 1)
    assert "write true or false" in error.message


def test_options_on_the_single_optimizer_mean_what_they_mean_in_defaults() -> None:
    inline = lrrules.loads("version: 1\ndefaults: {lr: 0.1}\noptimizer: {type: SGD, momentum: 0.9, nesterov: true}\n")
    usual = lrrules.loads("version: 1\ndefaults: {lr: 0.1, momentum: 0.9, nesterov: true}\noptimizer: {type: SGD}\n")
    assert inline == usual
    assert inline.defaults.options == {"momentum": 0.9, "nesterov": True}


def test_an_inline_option_keeps_its_place_for_later_messages() -> None:
    rules = lrrules.loads("version: 1\ndefaults: {lr: 0.1}\noptimizer:\n  type: SGD\n  bettas: [0.9]\n", path="r.yaml")
    assert str(rules.locate(("defaults", "bettas"))) == "r.yaml:5:11"


def test_an_option_given_on_the_optimizer_and_in_defaults_is_refused_naming_both_places() -> None:
    text = "version: 1\ndefaults: {lr: 0.1, momentum: 0.8}\noptimizer: {type: SGD, momentum: 0.9}\n"
    with pytest.raises(RuleFileError) as caught:
        lrrules.loads(text, path="r.yaml")
    (error,) = caught.value.errors
    assert (error.loc, error.line, error.col) == (("optimizer", "momentum"), 3, 24)
    assert "r.yaml:2:21" in error.message and "twice" in error.message


@pytest.mark.parametrize(("key", "says"), [("lr", "defaults.lr"), ("initial_lr", "schedulers"), ("params", "lrrules")])
def test_a_key_that_is_no_option_is_refused_on_the_optimizer_as_in_defaults(key: str, says: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        lrrules.loads(f"version: 1\ndefaults: {{lr: 0.1}}\noptimizer: {{type: SGD, {key}: 0.5}}\n", path="r.yaml")
    (error,) = caught.value.errors
    assert error.loc == ("optimizer", key) and (error.line, error.col) == (3, 24) and says in error.message


@pytest.mark.parametrize("key", ["typ", "tpye"])
def test_a_misspelt_type_on_the_optimizer_is_no_option(key: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        lrrules.loads(f"version: 1\ndefaults: {{lr: 0.1}}\noptimizer: {{{key}: SGD}}\n", path="r.yaml")
    (error,) = caught.value.errors
    assert error.loc == ("optimizer", key) and (error.line, error.col) == (3, 13)
    assert error.message == f"unknown key '{key}' (did you mean 'type'?)"


@pytest.mark.parametrize("where", [("defaults",), ("optimizer",), ("optimizers", "adam"), ("rules", 0, "options")],
                         ids=lambda p: ".".join(map(str, p)))
def test_schema_and_tool_agree_on_the_keys_that_are_no_options(where: tuple[str | int, ...]) -> None:
    disagree = []
    for key in [*RESERVED_OPTIONS, "dampening", "initial_accumulator_value"]:
        if key in ("lr", "weight_decay") and where[0] != "optimizer" and where[0] != "rules":
            continue  # the fields of defaults and of a named optimizer
        doc = _with((*where, key), 0.5)
        if VALIDATOR.is_valid(doc) != _loads(doc):
            disagree.append(key)
    assert not disagree


def test_inline_options_are_inherited_as_defaults_are(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("version: 1\ndefaults: {lr: 0.1}\noptimizer: {type: SGD, momentum: 0.9}\n")
    (tmp_path / "child.yaml").write_text("version: 1\nextends: base.yaml\noptimizer: {type: SGD, nesterov: true}\n")
    rules = lrrules.load(tmp_path / "child.yaml")
    assert rules.defaults.options == {"momentum": 0.9, "nesterov": True}
    assert str(rules.locate(("defaults", "momentum"))).endswith("base.yaml:3:34")
