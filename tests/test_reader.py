"""Reading rule files: positions, strictness, and hostile input (a rule file is data, never code)."""

from __future__ import annotations

from pathlib import Path

import json
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrrules.errors import LrrulesError, RuleFileError
from lrrules.reader import MAX_BYTES, MAX_DEPTH, MAX_NODES, parse, read


def error_of(text: str | bytes, fmt: str = "yaml") -> RuleFileError:
    with pytest.raises(RuleFileError) as err:
        parse(text, "rules.yaml" if fmt == "yaml" else "rules.json", fmt)
    assert len(err.value.errors) == 1
    return err.value


def test_yaml_positions_of_keys_and_values_are_one_based() -> None:
    data, source = parse("version: 1\nrules:\n  - name: head\n    lr_mult: 10\n")
    assert data == {"version": 1, "rules": [{"name": "head", "lr_mult": 10}]}
    assert (source.values[("rules", 0, "lr_mult")].line, source.values[("rules", 0, "lr_mult")].col) == (4, 14)
    assert (source.keys[("rules", 0, "lr_mult")].line, source.keys[("rules", 0, "lr_mult")].col) == (4, 5)


def test_json_positions_match_the_text() -> None:
    text = '{\n  "version": 1,\n  "rules": [{"name": "a", "lr": 0.5}]\n}'
    data, source = parse(text, "r.json", "json")
    assert data == {"version": 1, "rules": [{"name": "a", "lr": 0.5}]}
    spot = source.values[("rules", 0, "lr")]
    assert (spot.line, spot.col) == (3, 33)
    assert text.splitlines()[2][spot.col - 1 :].startswith("0.5")


def test_quoted_scalar_offsets_land_inside_the_quotes() -> None:
    _, source = parse("lr_mult: '0.9 ** dpeth'\n")
    where = source.locate(("lr_mult",), offset=7)
    assert "lr_mult: '0.9 ** dpeth'"[where.col - 1 :].startswith("dpeth")


def test_scientific_notation_without_a_dot_is_a_number() -> None:
    data, _ = parse("lr: 1e-3\nwd: 5E-2\nname: 1e3x\n")
    assert data == {"lr": 1e-3, "wd": 5e-2, "name": "1e3x"}


def test_timestamps_stay_text() -> None:
    assert parse("name: 2024-01-01\n")[0] == {"name": "2024-01-01"}


@pytest.mark.parametrize(
    ("text", "message", "line", "col"),
    [
        ("a: 1\na: 2\n", "duplicate key 'a' (first at line 1)", 2, 1),
        ("a: [1, 2\n", "invalid YAML", 2, 1),
        ("a: 1\n---\nb: 2\n", "several YAML documents", 2, 1),
        ("a: !!python/object/apply:os.system ['true']\n", "tag 'tag:yaml.org,2002:python/object/apply:os.system'", 1, 4),
        ("a: !!python/name:os.system\n", "is not allowed: a rule file holds plain data", 1, 4),
        ("a: !custom 5\n", "tag '!custom' is not allowed", 1, 4),
        ("a: !!binary aGVsbG8=\n", "is not allowed", 1, 4),
        ("a: !!set {x, y}\n", "is not allowed", 1, 4),
        ("base: &b {x: 1}\nother:\n  <<: *b\n", "merge keys", 3, 3),
        ("? [a, b]\n: 1\n", "a key must be a plain name", 1, 3),
    ],
)
def test_yaml_errors_name_the_place(text: str, message: str, line: int, col: int) -> None:
    error = error_of(text).errors[0]
    assert message in error.message
    assert (error.line, error.col) == (line, col)
    assert str(error).startswith(f"rules.yaml:{line}:{col}: ")


@pytest.mark.parametrize(
    ("text", "message", "line", "col"),
    [
        ('{"a": 1, "a": 2}', "duplicate key 'a'", 1, 10),
        ('{"a": 1,}', "Expecting property name enclosed in double quotes", 1, 9),
        ('{"a": NaN}', "NaN is no JSON value", 1, 7),
        ('{"a": [1, -Infinity]}', "-Infinity is no JSON value", 1, 11),
        ('{"a": 1} x', "Extra data", 1, 10),
        ('{"a": "x\n', "Invalid control character", 1, 9),
        ('{\n  "a" 1\n}', "Expecting ':' delimiter", 2, 7),
        ('[1, 2', "Expecting ',' delimiter", 1, 6),
        ('{\n\t"a": {"b":\t1, "b": 2}}', "duplicate key 'b' (first at line 2)", 2, 16),
        ("[1, " + "7" * 5000 + "]", "is too large", 1, 5),
    ],
)
def test_json_errors_name_the_place(text: str, message: str, line: int, col: int) -> None:
    error = error_of(text, "json").errors[0]
    assert message in error.message
    assert (error.line, error.col) == (line, col)


def test_json_reads_an_escaped_surrogate_pair_as_its_one_character_and_tabs_as_space() -> None:
    text = '{\t"a":\t["\\ud83d\\ude00", 1e2]}'
    data, source = parse(text, "r.json", "json")
    assert data == {"a": ["\U0001f600", 100.0]}
    assert (source.values[("a", 1)].line, source.values[("a", 1)].col) == (1, text.index("1e2") + 1)


def test_empty_file_is_an_error() -> None:
    assert "is empty" in error_of("  \n\n").errors[0].message


def test_comment_only_file_holds_no_document() -> None:
    assert "holds no document" in error_of("# nothing\n").errors[0].message


def test_non_utf8_file_names_the_byte_and_its_place() -> None:
    error = error_of(b"version: 1\nname: caf\xe9\n").errors[0]
    assert "not UTF-8" in error.message and "0xe9" in error.message
    assert (error.line, error.col) == (2, 10)


def test_utf8_byte_order_mark_is_accepted() -> None:
    assert parse(b"\xef\xbb\xbfversion: 1\n")[0] == {"version": 1}


def test_oversized_file_is_refused_before_parsing() -> None:
    assert "larger than" in error_of(b"a: 1\n" + b"#" * MAX_BYTES).errors[0].message


def test_deep_nesting_is_refused_without_exhausting_the_stack() -> None:
    error = error_of("a: " + "[" * 5000 + "]" * 5000 + "\n").errors[0]
    assert f"nests deeper than {MAX_DEPTH} levels" in error.message
    assert error.line == 1


def test_deep_json_nesting_is_refused() -> None:
    assert "nests deeper" in error_of("[" * 5000 + "]" * 5000, "json").errors[0].message


def test_billion_laughs_alias_bomb_is_stopped() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    error = error_of("\n".join(lines) + "\n").errors[0]
    assert f"more than {MAX_NODES} values" in error.message


def test_a_few_aliases_are_fine() -> None:
    data, _ = parse("base: &m {glob: 'fc.*'}\nagain: *m\n")
    assert data["again"] == {"glob": "fc.*"}


def test_read_reports_a_missing_file() -> None:
    with pytest.raises(RuleFileError, match="no such file"):
        read("does/not/exist.yaml")


def test_read_reports_a_directory(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="is a directory"):
        read(tmp_path)


def test_read_picks_json_by_the_name(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"a": 1, "a": 2}')
    with pytest.raises(RuleFileError) as err:
        read(path)
    assert "invalid JSON" in err.value.errors[0].message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_give_data_or_our_own_error(raw: bytes) -> None:
    for fmt in ("yaml", "json"):
        try:
            parse(raw, "fuzz", fmt)
        except LrrulesError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#\n ,?%@`1.")), max_size=80))
def test_yaml_shaped_text_gives_data_or_our_own_error(text: str) -> None:
    try:
        parse(text, "fuzz")
    except LrrulesError:
        pass


@pytest.mark.parametrize("key_separator", [":", " : ", "\n:", "\n  :\n  ", "\t:\t"])
def test_valid_json_reads_whatever_the_whitespace_around_its_colons(key_separator: str) -> None:
    doc = {"version": 1, "defaults": {"lr": 0.1}, "rules": [{"name": "head", "match": {"glob": "fc.*"}}]}
    text = json.dumps(doc, indent=2, separators=(",", key_separator))
    data, source = parse(text, "rules.json", "json")
    assert data == json.loads(text)
    name_line = next(i for i, line in enumerate(text.splitlines(), 1) if '"head"' in line or '"name"' in line)
    assert source.locate(("rules", 0, "name"), key=True).line == name_line
