"""Errors keep their parts as data (path, line, col, loc, expr, offset); str() only prints them."""

from __future__ import annotations

import pytest

import lrrules
from lrrules.errors import FormulaError, Location, OptimizerError, RuleError, RuleFileError, did_you_mean, dotted


def test_a_rule_file_error_keeps_every_place_as_attributes() -> None:
    text = "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: '*', lr_mult: '0.9 ** dpeth'}\n"
    with pytest.raises(RuleFileError) as caught:
        lrrules.loads(text, "r.yaml")
    (error,) = caught.value.errors
    assert (error.path, error.line, error.loc, error.expr, error.offset) == (
        "r.yaml", 4, ("rules", 0, "lr_mult"), "0.9 ** dpeth", 7)
    assert text.splitlines()[3][error.col - 1 :].startswith("dpeth")
    assert str(error).startswith(f"r.yaml:4:{error.col}: rules[0].lr_mult: unknown name 'dpeth' (did you mean 'depth'?)")
    assert str(error).endswith("0.9 ** dpeth\n           ^")


def test_an_optimizer_error_keeps_its_place_apart_from_its_message() -> None:
    error = OptimizerError("option 'bettas' is not an option of AdamW", Location("r.yaml", 4, 7))
    assert (error.path, error.line, error.col, error.message) == ("r.yaml", 4, 7, "option 'bettas' is not an option of AdamW")
    assert OptimizerError("x").path == "" and OptimizerError("x", "r.yaml").line == 0


def test_a_place_without_a_line_prints_the_file_alone() -> None:
    error = RuleError("bad", Location("<mapping>"), ("rules", 2, "lr_mult"))
    assert (error.line, error.col) == (0, 0) and str(error) == "<mapping>: rules[2].lr_mult: bad"


def test_a_formula_error_knows_its_offset_not_its_file() -> None:
    error = FormulaError("division by zero", "1 / 0", 2)
    assert (error.expr, error.offset) == ("1 / 0", 2) and str(error) == "division by zero\n    1 / 0\n      ^"


def test_hints_and_dotted_places() -> None:
    assert did_you_mean("lr_mul", ["lr_mult", "weight_decay"]) == " (did you mean 'lr_mult'?)"
    assert did_you_mean("zzz", ["lr"]) == ""
    assert dotted(("rules", 3, "options", "momentum")) == "rules[3].options.momentum"
