"""The C YAML reader (libyaml) and the pure-Python one agree: the same data, the same marks, the same
limits and errors, on the language's spec cases and on generated files."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from lrrules import reader
from lrrules.errors import LrrulesError, RuleFileError
from lrrules.loader import loads
from lrrules.reader import MAX_DEPTH, _Yaml

from .test_spec import CASES, infos

pytestmark = pytest.mark.skipif(not getattr(yaml, "__with_libyaml__", False), reason="pyyaml without libyaml")


def _read(text: str, c: bool) -> Any:
    """The data and every mark, or the error's message and place."""
    try:
        data, source = _Yaml(text, "r.yaml", c=c).document()
    except RuleFileError as exc:
        return [(e.message, e.line, e.col) for e in exc.errors]
    return data, source.values, source.keys


def test_the_c_reader_is_the_default_where_pyyaml_has_it() -> None:
    assert reader.C_LOADER


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_both_readers_agree_on_every_spec_case(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lrrules.resolve import resolve_params

    case = yaml.safe_load(path.read_text())
    text = case["rules"]
    assert _read(text, True) == _read(text, False)
    results = []
    for c in (True, False):
        monkeypatch.setattr(reader, "C_LOADER", c)
        try:
            plan = resolve_params(loads(text, "rules.yaml"), infos(case.get("params", [])))
            results.append(plan.to_dict())
        except LrrulesError as exc:
            results.append(str(exc))
    assert results[0] == results[1]


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


@pytest.mark.parametrize("seed", range(600))
def test_both_readers_agree_on_generated_files(seed: int) -> None:
    text = _document(random.Random(seed))
    c, python = _read(text, True), _read(text, False)
    if isinstance(python, list) and isinstance(c, list):
        # A syntax error: libyaml words some differently; the place is the same where both parsers
        # stop at the same token, and always a place inside the file.
        assert [e[1:] for e in c] == [e[1:] for e in python] or all(0 < e[1] <= text.count("\n") + 1 for e in c)
        if python[0][0].startswith("tag '") and c[0][0].startswith("tag '"):
            # libyaml reads a tag in a flow list up to the ',' inclusive ('!!x,'), PyYAML stops before
            # it: the same tag refused at the same place, its text differs by that comma.
            assert [e[1:] for e in c] == [e[1:] for e in python], text
        elif not python[0][0].startswith("invalid YAML") and not c[0][0].startswith("invalid YAML"):
            assert c == python, text  # lrrules' own errors (duplicates, limits, schema): word for word
        return
    assert c == python, text


@pytest.mark.parametrize("seed", range(40))
def test_a_control_character_is_placed_by_line_and_column_in_both_readers(seed: int) -> None:
    rng = random.Random(seed)
    lines = ["version: 1", "defaults: {lr: 0.1}", "rules:", "  - name: héad", "    match: 'fc.*'"]
    row = rng.randrange(len(lines))
    col = rng.randrange(len(lines[row]) + 1)
    char = rng.choice(["\0", "\x1b", "\x07", "\x7f", "\x0b"])
    lines[row] = lines[row][:col] + char + lines[row][col:]
    text = "\n".join(lines) + "\n"
    for c in (True, False):
        with pytest.raises(RuleFileError) as caught:
            _Yaml(text, "r.yaml", c=c).document()
        error = caught.value.errors[0]
        assert (error.line, error.col) == (row + 1, col + 1)
        assert f"#x{ord(char):04x}" in error.message and "position" not in str(caught.value)


@pytest.mark.parametrize("c", [True, False])
def test_nesting_is_bounded_at_the_same_place_in_both_readers(c: bool) -> None:
    for text in ("a: " + "[" * 5000 + "]" * 5000 + "\n", "a:\n" + "".join(" " * i + "- \n" for i in range(70))):
        with pytest.raises(RuleFileError, match=f"nests deeper than {MAX_DEPTH} levels") as caught:
            _Yaml(text, "r.yaml", c=c).document()
        python = _read(text, False)
        error = caught.value.errors[0]
        assert [(error.message, error.line, error.col)] == python
