"""The first mistakes of a newcomer get a hint that says what to write instead."""

from __future__ import annotations

import pytest

from lrrules import loads
from lrrules.errors import RuleFileError

HEAD = "version: 1\ndefaults: {lr: 0.1}\n"


def _error(text: str) -> str:
    with pytest.raises(RuleFileError) as info:
        loads(text, "r.yaml")
    return str(info.value)


@pytest.mark.parametrize("glob", ["*.bias", "*norm*", "*.weight", "*"])
@pytest.mark.parametrize("style", ["flow", "block", "list"])
def test_an_unquoted_glob_is_a_yaml_alias(glob: str, style: str) -> None:
    body = {"flow": f"rules:\n  - {{name: a, match: {glob}}}\n",
            "block": f"rules:\n  - name: a\n    match: {glob}\n",
            "list": f"rules:\n  - name: a\n    match:\n      - {glob}\n"}[style]
    message = _error(HEAD + body)
    assert "must be quoted" in message and "match: '*.bias'" in message
    # The hint is right: quoting the glob makes the file load.
    quoted = body.replace(f" {glob}", f" '{glob}'")
    assert loads(HEAD + quoted, "r.yaml").rules[0].name == "a"


@pytest.mark.parametrize("regex", [r"^layer(\d)\.", r"blocks\.(\d+)", r"\w+\.bias", r"^head\s"])
def test_a_regex_escape_inside_double_quotes(regex: str) -> None:
    message = _error(HEAD + f'rules:\n  - {{name: a, match: {{regex: "{regex}"}}}}\n')
    assert "single quotes" in message
    assert loads(HEAD + f"rules:\n  - {{name: a, match: {{regex: '{regex}'}}}}\n", "r.yaml").rules


@pytest.mark.parametrize("formula", ["0.9 ^ depth", "2^3", "(0.5 ^ (4 - layer))", "lr_scale * 0.9 ^ 2"])
def test_a_caret_for_a_power(formula: str) -> None:
    rules = "rules:\n  - {name: a, match: '*', lr_mult: '%s'}\n"
    message = _error(HEAD + rules % formula)
    assert "'^' is not a power" in message and "'**'" in message
    fixed = formula.replace("^", "**").replace("lr_scale * ", "")
    assert loads(HEAD + rules % fixed, "r.yaml").rules


@pytest.mark.parametrize("number", ["0.5", "1e-3", "10", " 0.25 "])
def test_a_quoted_number_where_a_number_goes(number: str) -> None:
    message = _error(f"version: 1\nvars: {{decay: '{number}'}}\ndefaults: {{lr: 0.1}}\nrules:\n  - {{name: a, match: '*'}}\n")
    assert f"write {float(number)!r} without quotes" in message and "r.yaml:2:" in message
    message = _error(f"version: 1\ndefaults: {{lr: '{number}'}}\nrules:\n  - {{name: a, match: '*'}}\n")
    assert "without quotes" in message


def test_text_that_is_no_number_gets_no_number_hint() -> None:
    message = _error("version: 1\nvars: {decay: fast}\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: '*'}\n")
    assert "not text" in message and "without quotes" not in message
