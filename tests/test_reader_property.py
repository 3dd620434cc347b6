"""Properties of the reader over whole classes of text: plain data written as YAML or JSON reads back
as itself, every key and value is placed where it stands, and any text gives data or our own error
placed inside the file."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrrules.errors import RuleFileError
from lrrules.reader import MAX_DEPTH, parse

# Printable letters, digits, punctuation and symbols (and the plain space): text that shows as written.
_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0x2FF, categories=("L", "N", "P", "S")) | st.sampled_from(
    [" ", "层", "é", "ñ"])
_KEYS = st.text(_CHARS, min_size=1, max_size=12)
_SCALARS = (st.none() | st.booleans() | st.integers(-(10**12), 10**12)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(_CHARS, max_size=16))
DATA = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
                    max_leaves=20)


def _text(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False, indent=1)
    return yaml.safe_dump(data, allow_unicode=True, default_flow_style=fmt == "flow", width=10**6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DATA, st.sampled_from(["json", "block", "flow"]))
def test_plain_data_written_as_yaml_or_json_reads_back_as_itself(data: Any, fmt: str) -> None:
    text = _text(data, fmt)
    read, _ = parse(text, "r.json" if fmt == "json" else "r.yaml", "json" if fmt == "json" else "yaml")
    assert read == data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYS, DATA, min_size=1, max_size=5), st.sampled_from(["json", "block", "flow"]))
def test_every_key_and_scalar_is_placed_where_its_text_starts(data: Any, fmt: str) -> None:
    text = _text(data, fmt)
    _, source = parse(text, "r", "json" if fmt == "json" else "yaml")
    lines = text.split("\n")
    for loc, spot in source.keys.items():
        at = lines[spot.line - 1][spot.col - 1 :]
        assert at.startswith((str(loc[-1]), "'", '"', "? ")), (loc, at)
    for loc, spot in source.values.items():
        value: Any = data
        for part in loc:
            value = value[part]
        at = lines[spot.line - 1][spot.col - 1 + len(spot.quote) :]
        if isinstance(value, str) and value and spot.quote != '"':
            assert at.startswith(value[:1]) or at.startswith(("'", "|", ">")), (loc, at)
        elif isinstance(value, bool):
            assert at.lower().startswith(str(value).lower()), (loc, at)
        elif isinstance(value, (list, dict)) and fmt != "block":
            assert at.startswith("[" if isinstance(value, list) else "{"), (loc, at)


_WORDS = ["lr", "rules", "name", "match", "héad", "ñorm", "层", "w", "layer.0", "a b", "x:y", "#no", "-dash"]


def _scalar(rng: random.Random) -> str:
    kind = rng.randrange(9)
    word = rng.choice(_WORDS)
    if kind == 0:
        return repr(rng.choice([0.1, 1e-3, 3, -2, 10**400]))
    if kind == 1:
        return f"'{word}'"
    if kind == 2:
        return f'"{word}\\t\\u00e9"'
    if kind == 3:
        return rng.choice(["true", "null", "~", "yes", "010", "0x1f", ".inf", "1_000", "1:30"])
    if kind == 4:
        return f"!!str {rng.randrange(100)}"
    if kind == 5:
        return rng.choice(["!!python/name:os.system", "!!binary aGk=", "!!int 1:30", "!!float x"])
    return word if word[0] not in "#-" and ":" not in word and " " not in word else f"'{word}'"


def _value(rng: random.Random, depth: int, indent: int) -> str:
    if depth > 3 or rng.random() < 0.4:
        return " " + _scalar(rng)
    pad = " " * indent
    if rng.random() < 0.3:  # flow style
        if rng.random() < 0.5:
            return " [" + ", ".join(_scalar(rng) for _ in range(rng.randrange(4))) + "]"
        return " {" + ", ".join(f"k{i}: {_scalar(rng)}" for i in range(rng.randrange(4))) + "}"
    if rng.random() < 0.2:
        return " |\n" + "".join(f"{pad}  {rng.choice(_WORDS)}\n" for _ in range(2)).rstrip("\n")
    if rng.random() < 0.5:
        return "".join(f"\n{pad}-{_value(rng, depth + 1, indent + 2)}" for _ in range(rng.randrange(1, 4)))
    keys = rng.sample(["a", "b", "héllo", "'q k'", "c", "a"], rng.randrange(1, 4))
    return "".join(f"\n{pad}{k}:{_value(rng, depth + 1, indent + 2)}" + (" # note" if rng.random() < 0.2 else "")
                   for k in keys)


def _document(rng: random.Random) -> str:
    text = "version: 1\n" + "".join(f"{k}:{_value(rng, 1, 2)}\n" for k in rng.sample(
        ["defaults", "rules", "modifiers", "vars", "layers", "extra"], rng.randrange(1, 5)))
    if rng.random() < 0.2:
        text = text.replace("version: 1", "version: &v 1\nalso: *v", 1)
    if rng.random() < 0.1:
        text += "---\nagain: 1\n"
    if rng.random() < 0.1:
        text += rng.choice(["bad: [1, 2\n", "  wrong: indent\n", "k: v: w\n", "x: *nowhere\n", "\t tab: 1\n"])
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_rule_file_shaped_text_gives_placed_data_or_one_error_inside_the_file(rng: random.Random) -> None:
    text = _document(rng)
    lines = text.split("\n")
    try:
        data, source = parse(text, "r.yaml")
    except RuleFileError as exc:
        (error,) = exc.errors
        assert 0 < error.line <= len(lines) and 0 < error.col <= len(lines[error.line - 1]) + 1, (text, str(exc))
        assert str(exc).startswith(f"r.yaml:{error.line}:{error.col}: ") and "Traceback" not in str(exc)
        return
    assert isinstance(data, dict) and data["version"] == 1
    for loc, spot in source.keys.items():
        assert lines[spot.line - 1][spot.col - 1 :].lstrip("'").startswith(str(loc[-1])), (text, loc)


@settings(max_examples=100, deadline=None)
@given(st.data(), st.sampled_from(["\0", "\x1b", "\x07", "\x7f", "\x0b"]))
def test_a_control_character_is_placed_by_its_line_and_column(data: st.DataObject, char: str) -> None:
    lines = ["version: 1", "defaults: {lr: 0.1}", "rules:", "  - name: héad", "    match: 'fc.*'"]
    row = data.draw(st.integers(0, len(lines) - 1))
    col = data.draw(st.integers(0, len(lines[row])))
    lines[row] = lines[row][:col] + char + lines[row][col:]
    with pytest.raises(RuleFileError) as caught:
        parse("\n".join(lines) + "\n", "r.yaml")
    error = caught.value.errors[0]
    assert (error.line, error.col) == (row + 1, col + 1)
    assert f"#x{ord(char):04x}" in error.message and "position" not in str(caught.value)


@pytest.mark.parametrize(("text", "spot"), [
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", (1, 3 + MAX_DEPTH)),
    ("a:\n" + "".join(" " * i + "- \n" for i in range(70)), (MAX_DEPTH + 1, MAX_DEPTH)),
])
def test_nesting_is_refused_where_the_level_past_the_limit_opens(text: str, spot: tuple[int, int]) -> None:
    with pytest.raises(RuleFileError, match=f"nests deeper than {MAX_DEPTH} levels") as caught:
        parse(text, "r.yaml")
    assert (caught.value.errors[0].line, caught.value.errors[0].col) == spot
