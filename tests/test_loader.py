"""Loading: every error of a file reported together, each at its file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

import lrrules
from lrrules.errors import RuleFileError

MANY = """\
version: 1
defaults: {lr: 0.1}
rules:
  - {name: a, match: 'x.*'}
  - {name: a, match: 'y.*'}
  - {name: f1, fallback: true}
  - {name: f2, fallback: true}
  - {name: b, match: 'z.*', lr: -1}
modifiers:
  - {name: b, match: '*'}
"""


def test_cross_entry_errors_and_field_errors_are_all_reported_together_with_their_places(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(MANY)
    with pytest.raises(RuleFileError) as caught:
        lrrules.load(path)
    found = [(e.line, e.col, e.loc, e.message) for e in caught.value.errors]
    assert found == [
        (5, 12, ("rules", 1, "name"), "the name 'a' is used twice (first in rules[0]); names must be unique"),
        (7, 26, ("rules", 3, "fallback"), "a second fallback rule (the first is rules[2]); keep one"),
        (8, 33, ("rules", 4, "lr"), "-1 is negative; rates and decays are >= 0, got -1"),
        (10, 12, ("modifiers", 0, "name"), "the name 'b' is used twice (first in rules[4]); names must be unique"),
    ]
    assert all(e.path == str(path) for e in caught.value.errors)


def test_an_error_under_layers_patterns_keeps_its_place(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\ndefaults: {lr: 0.1}\nlayers:\n  by: patterns\n  patterns:\n"
                    "    - 'a.*'\n    - {regex: '(open'}\nrules:\n  - {name: all, match: '*'}\n")
    with pytest.raises(RuleFileError) as caught:
        lrrules.load(path)
    (error,) = caught.value.errors
    assert error.loc == ("layers", "patterns", 1, "regex", 0)
    assert (error.line, str(error).split(":")[0]) == (7, str(path))
    assert str(error).startswith(f"{path}:7:")


def test_model_validate_still_refuses_a_name_used_twice() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="used twice"):
        lrrules.RuleSet.model_validate({"version": 1, "defaults": {"lr": 1},
                                        "rules": [{"name": "a", "match": "x"}, {"name": "a", "match": "y"}]})
