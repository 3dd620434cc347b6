"""The language's models beyond the compliance cases: the API, serialisation, and the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

import lrrules
from lrrules.errors import RuleFileError
from lrrules.formula import Formula
from lrrules.language import RuleSet, json_schema, json_schema_text

ROOT = Path(__file__).parent.parent
SCHEMA = ROOT / "schemas" / "lrrules.schema.json"


def test_schema_file_is_up_to_date() -> None:
    assert SCHEMA.read_text() == json_schema_text(), "schemas/ is stale: run `make schema` and commit it"


@pytest.mark.parametrize("path", sorted([*(ROOT / "examples").glob("*.yaml"), *(ROOT / "examples").glob("*.json")]),
                         ids=lambda p: p.name)
def test_every_example_is_valid_under_the_json_schema(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), json.loads(SCHEMA.read_text()))


def test_schema_rejects_what_the_models_reject() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    bad = {"version": 1, "defaults": {"lr": 0.1}, "rules": [{"name": "a", "match": "*", "lr_mul": 2}]}
    assert list(validator.iter_errors(bad))
    with pytest.raises(RuleFileError):
        lrrules.loads(json.dumps(bad), fmt="json")


def test_model_validate_takes_a_plain_dict_and_compiles_formulas() -> None:
    rules = RuleSet.model_validate({
        "version": 1, "defaults": {"lr": 1e-3},
        "rules": [{"name": "s", "match": {"regex": r"^layer(?P<stage>\d)"}, "lr_mult": "0.5 ** (4 - stage)"}],
    })
    formula = rules.rules[0].lr_mult
    assert isinstance(formula, Formula) and formula.names == {"stage"}


def test_dumped_rule_set_loads_back_to_an_equal_one() -> None:
    rules = lrrules.load(ROOT / "examples" / "resnet18-discriminative.yaml")
    dumped = rules.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert RuleSet.model_validate(json.loads(json.dumps(dumped))) == rules


def test_json_and_yaml_spellings_of_one_file_are_equal() -> None:
    text = (ROOT / "examples" / "no-decay-bias-norm.json").read_text()
    assert lrrules.loads(text, fmt="json") == lrrules.loads(text)


def test_defaults_keep_other_optimizer_options() -> None:
    rules = lrrules.loads("version: 1\ndefaults: {lr: 0.1, momentum: 0.9, betas: [0.9, 0.99]}\n")
    assert rules.defaults.options == {"momentum": 0.9, "betas": [0.9, 0.99]}


def test_errors_carry_their_parts_as_attributes() -> None:
    with pytest.raises(RuleFileError) as err:
        lrrules.loads("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: '*', lr_mult: '2 ** dpeth'}\n",
                      "r.yaml")
    error = err.value.errors[0]
    assert (error.path, error.line, error.loc, error.expr, error.offset) == (
        "r.yaml", 4, ("rules", 0, "lr_mult"), "2 ** dpeth", 5)
    assert str(error).startswith(f"r.yaml:4:{error.col}: rules[0].lr_mult: unknown name 'dpeth'")
    assert str(error).splitlines()[-1] == "    " + " " * 5 + "^"


def test_a_document_that_is_not_a_mapping_is_explained() -> None:
    with pytest.raises(RuleFileError, match="a rule file is a mapping"):
        lrrules.loads("- just\n- a list\n")


def test_schema_lets_a_file_that_extends_leave_defaults_to_its_parent() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    assert not list(validator.iter_errors({"version": 1, "extends": "base.yaml"}))
    assert list(validator.iter_errors({"version": 1}))
