"""Rule files whose text reads one way to a person (or an editor, or another YAML reader) and another
to lrrules, or that recurse past any depth: each is refused with its place, never a traceback."""

from __future__ import annotations

import json
import sys
import unicodedata
from pathlib import Path

import pytest

from lrrules.cli import main
from lrrules.errors import LrrulesError, RuleFileError
from lrrules.loader import loads
from lrrules.reader import MAX_DEPTH, parse

HEAD = "version: 1\ndefaults: {lr: 0.1}\n"


def refused(text: str | bytes, fmt: str = "yaml") -> RuleFileError:
    with pytest.raises(RuleFileError) as caught:
        loads(text, "r.yaml", fmt)
    return caught.value


def place(error: RuleFileError) -> tuple[int, int]:
    return error.errors[0].line, error.errors[0].col


# --- recursion -----------------------------------------------------------------------------------


def alias_chain(levels: int) -> str:
    """``x0: &a0 [1]``, ``x1: &a1 [*a0]``, ...: each alias one list deeper than the anchor before."""
    lines = [HEAD.strip(), "x0: &a0 [1]"] + [f"x{i}: &a{i} [*a{i - 1}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_a_chain_of_aliases_1200_deep_is_the_depth_error_at_the_alias_that_passes_it() -> None:
    # Anchor a{i} holds i + 1 lists, and its alias in x{i + 1} stands two levels deep (the top mapping,
    # the list): x{i} nests i + 2 levels, so x{MAX_DEPTH - 1} is the first past the limit, on line
    # MAX_DEPTH + 2 (x0 is on line 3), its alias *a{MAX_DEPTH - 2} at column len("x63: &a63 [") + 1.
    error = refused(alias_chain(1200))
    k = MAX_DEPTH - 1
    assert place(error) == (k + 3, len(f"x{k}: &a{k} [") + 1)
    assert f"deeper than {MAX_DEPTH} levels" in error.errors[0].message and f"*a{k - 1}" in error.errors[0].message


def test_a_chain_of_aliases_up_to_the_depth_limit_still_reads() -> None:
    data, _ = parse(alias_chain(MAX_DEPTH - 1))
    value, depth = data[f"x{MAX_DEPTH - 2}"], 1  # the top mapping
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    assert (value, depth) == (1, MAX_DEPTH)


def test_the_alias_chain_on_the_command_line_exits_2_without_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(alias_chain(1200))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith(f"{path}:{MAX_DEPTH + 2}:")


DEEP = 5000
DEEP_INPUTS = {
    "json objects": ('{"a": ' * DEEP + "1" + "}" * DEEP, "json"),
    "json lists": ("[" * DEEP + "]" * DEEP, "json"),
    "yaml flow": ("[" * DEEP + "]" * DEEP, "yaml"),
    "yaml block lists": ("".join(" " * i + "-\n" for i in range(0, 2 * 300, 2)), "yaml"),
    "yaml flow maps": ("{a: " * DEEP + "1" + "}" * DEEP, "yaml"),
    "alias fan": ("a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]\n" for i in range(1, 300)), "yaml"),
    "nested not": (HEAD + "rules:\n  - name: a\n    match: " + "{not: " * 200 + "'*'" + "}" * 200 + "\n", "yaml"),
    "nested any": (HEAD + "rules:\n  - name: a\n    match: " + "{any: [" * 100 + "'*'" + "]}" * 100 + "\n", "yaml"),
    "extends list": (HEAD + "extends: " + "[" * 200 + "]" * 200 + "\n", "yaml"),
}
FORMULAS = ["(" * 240 + "1" + ")" * 240, "-" * 400 + "1", "not " * 110 + "1", "1+" * 200 + "1",
            "2**" * 150 + "1", "~" * 400 + "1", "1<" * 200 + "1", "max(" * 90 + "1" + ")" * 90]


@pytest.mark.parametrize("text,fmt", DEEP_INPUTS.values(), ids=list(DEEP_INPUTS))
def test_deep_input_to_every_recursive_walk_is_a_located_error_not_a_recursion_error(text: str, fmt: str) -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(400)  # a walk that recursed once per level would fail here, well inside the text
    try:
        error = refused(text, fmt)
    finally:
        sys.setrecursionlimit(limit)
    line, col = place(error)
    lines = text.split("\n")
    assert 1 <= line <= len(lines) and 1 <= col <= len(lines[line - 1]) + 1


@pytest.mark.parametrize("formula", FORMULAS, ids=[f[:6] for f in FORMULAS])
def test_deep_formulas_are_located_errors_or_values(formula: str) -> None:
    text = HEAD + f"rules:\n  - {{name: a, match: '*', lr_mult: {json.dumps(formula)}}}\n"
    try:
        loads(text)
    except LrrulesError as exc:
        assert isinstance(exc, RuleFileError) and place(exc)[0] == 4


# --- YAML 1.1 and odd YAML -----------------------------------------------------------------------

ODD_YAML = [
    ("%YAML 1.1\n---\n" + HEAD, (1, 1), "'%YAML 1.1'"),
    ("%YAML 2.0\n---\n" + HEAD, (1, 1), "incompatible YAML document"),
    ("# a comment\n%TAG !p! tag:yaml.org,2002:python/\n---\n" + HEAD, (2, 1), "names Python tags"),
    ("%TAG !e! tag:example.com,2000:\n---\n" + HEAD + "x: !e!thing 1\n", (5, 4), "tag 'tag:example.com,2000:thing'"),
    (HEAD + "x: !!binary aGVsbG8=\n", (3, 4), "tag 'tag:yaml.org,2002:binary'"),
    (HEAD + "x: !!set {a, b}\n", (3, 4), "tag 'tag:yaml.org,2002:set'"),
    (HEAD + "x: !!omap [a: 1]\n", (3, 4), "tag 'tag:yaml.org,2002:omap'"),
    (HEAD + "x: !!timestamp 2001-12-14\n", (3, 4), "timestamp"),
    (HEAD + "x: !!python/object/apply:os.system [echo owned]\n", (3, 4), "python/object/apply:os.system"),
    (HEAD + "x: !!python/name:os.system ''\n", (3, 4), "python/name:os.system"),
    (HEAD + "x: !!int 1.5\n", (3, 4), "'1.5' is not a YAML 1.2 int"),
    (HEAD + "x: !!float yes\n", (3, 4), "'yes' is not a YAML 1.2 float"),
    (HEAD + "x: &a 1\ny: &a 2\nz: *a\n", (4, 4), "&a is defined twice (first at line 3, column 4)"),
]


@pytest.mark.parametrize("text,spot,message", ODD_YAML, ids=[m for _, _, m in ODD_YAML])
def test_odd_yaml_is_refused_at_its_place(text: str, spot: tuple[int, int], message: str) -> None:
    error = refused(text)
    assert place(error) == spot and message in error.errors[0].message


def test_no_python_tag_runs_code_whatever_the_directives(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for text in (f"x: !!python/object/apply:os.system ['touch {marker}']\n",
                 f"%TAG !p! tag:yaml.org,2002:python/\n---\nx: !p!object/apply:os.system ['touch {marker}']\n",
                 f"%TAG ! tag:yaml.org,2002:python/\n---\nx: !object/apply:os.system ['touch {marker}']\n"):
        refused(HEAD + text if not text.startswith("%") else text)
    assert not marker.exists()


def test_explicit_core_tags_read_as_yaml_1_2_reads_them() -> None:
    data, _ = parse("a: !!float 1\nb: !!int 0x1f\nc: !!str 010\nd: 010\ne: !!float 1e3\nf: !!int '7'\n"
                    "%s" % "g: !!null ''\nh: !!bool false\n")
    assert data == {"a": 1.0, "b": 31, "c": "010", "d": 10, "e": 1000.0, "f": 7, "g": None, "h": False}
    assert type(data["a"]) is float and type(data["f"]) is int


def test_a_yaml_1_2_directive_is_read() -> None:
    data, _ = parse("%YAML 1.2\n---\na: 010\nb: yes\n")
    assert data == {"a": 10, "b": "yes"}


@pytest.mark.parametrize(("written", "value"), [("010", 10), ("0x1f", 31), ("0o17", 15), ("1e-3", 0.001),
                                                 ("-.5", -0.5), ("+2", 2), ("7", 7)])
def test_set_reads_a_value_as_the_file_reads_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                written: str, value: float) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(HEAD + "vars: {x: 0.5}\n")
    assert main(["show", str(path), "--set", f"x={written}", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)["vars"]["x"]
    in_file, _ = parse(f"x: {written}\n")
    assert shown == value == in_file["x"]


# --- text that lies ------------------------------------------------------------------------------

SEPARATORS = ["\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("char", SEPARATORS)
@pytest.mark.parametrize("where", ["comment", "plain", "quoted", "json"])
def test_a_line_end_that_readers_disagree_on_is_refused_at_the_line_a_person_sees(char: str, where: str) -> None:
    # PyYAML ends a comment at U+2028 (YAML 1.1) where YAML 1.2 and JSON read on: "b: 2" after it is
    # a key to one reader and part of the comment to the other.
    if where == "json":
        text, fmt, spot = '{"version": 1,\n "x": "a' + char + 'b"}', "json", (2, 9)
    else:
        value = {"comment": "1 # note" + char + "b: 2", "plain": "a" + char + "b", "quoted": "'a" + char + "b'"}[where]
        text, fmt = HEAD + "x: " + value + "\n", "yaml"
        spot = (3, 4 + value.index(char))
    error = refused(text, fmt)
    assert place(error) == spot and f"U+{ord(char):04X}" in error.errors[0].message


@pytest.mark.parametrize("char", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
                                  "\u2069", "\u200e", "\u200f", "\u061c"])
def test_a_bidirectional_control_is_refused_even_in_a_comment(char: str) -> None:
    error = refused(HEAD + "rules:\n  - {name: a, match: '*', lr_mult: 1}  # x" + char + "y\n")
    assert place(error) == (4, len("  - {name: a, match: '*', lr_mult: 1}  # x") + 1)
    assert unicodedata.name(char) in error.errors[0].message


def test_an_escaped_line_separator_or_bidi_control_is_read() -> None:
    data, _ = parse('a: "x\\u2028y\\u202ez"\n')
    assert data == {"a": "x\u2028y\u202ez"}


def invisible_characters() -> list[str]:
    """Every format character (Cf) and every space but U+0020, found from Unicode's own categories."""
    return [chr(c) for c in range(sys.maxunicode + 1)
            if unicodedata.category(chr(c)) == "Cf" or unicodedata.category(chr(c)) == "Zs" and c != 0x20]


INVISIBLE = invisible_characters()


def test_every_invisible_character_raw_in_a_glob_is_refused_at_its_column() -> None:
    for char in INVISIBLE:
        line = f"  - {{name: a, match: 'fc.{char}weight'}}"
        for fmt, text in (("yaml", HEAD + "rules:\n" + line + "\n"),
                          ("json", '{"version": 1,\n"rules": [{"name": "a", "match": "fc.' + char + 'w"}]}')):
            with pytest.raises(RuleFileError) as caught:
                parse(text, "r", fmt)
            error = caught.value.errors[0]
            expected = (4, line.index(char) + 1) if fmt == "yaml" else (2, len('"rules": [{"name": "a", "match": "fc.') + 1)
            assert (error.line, error.col) == expected, (hex(ord(char)), fmt)
            assert f"U+{ord(char):04X}" in error.message


@pytest.mark.parametrize("char", ["\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\u3000", "\ufe0f"])
def test_a_name_or_glob_holding_an_invisible_character_written_as_an_escape_loads(char: str) -> None:
    escaped = char.encode("unicode_escape").decode().replace("\\x", "\\u00")
    rules = loads(HEAD + f'rules:\n  - {{name: "he{escaped}ad", match: "fc.{escaped}w"}}\n')
    assert rules.rules[0].name == f"he{char}ad"


def test_an_invisible_character_in_a_comment_changes_nothing() -> None:
    data, _ = parse("a: 1  # a family: 👨\u200d👩\u200d👧 \u00a0\n")
    assert data == {"a": 1}


def test_a_byte_order_mark_in_the_middle_is_refused_and_one_at_the_start_is_read() -> None:
    assert parse(b"\xef\xbb\xbfa: 1\n")[0] == {"a": 1}
    error = refused(HEAD + "\ufeffrules: []\n")
    assert place(error) == (3, 1) and "U+FEFF" in error.errors[0].message


@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("end", ["\r", "\r\n", "\n"])
def test_positions_count_lines_as_an_editor_does_whatever_the_line_ends(fmt: str, end: str) -> None:
    if fmt == "yaml":
        lines = ["version: 1", "defaults: {lr: 0.1}", "rules:", "  - {name: a, match: '*', lr_mul: 2}"]
        spot = (4, lines[3].index("lr_mul") + 1)
    else:
        lines = ["{", '"version": 1,', '"defaults": {"lr": 0.1},', '"rules": [{"name": "a", "match": "*", "lr_mul": 2}]',
                 "}"]
        spot = (4, lines[3].index('"lr_mul"') + 1)
    error = refused(end.join(lines) + end, fmt)
    assert place(error) == spot


@pytest.mark.parametrize(("raw", "spot", "message"), [
    (b"a: 1\nb: \xed\xa0\x80x\n", (2, 4), "byte offset 8 holds a UTF-16 surrogate written as UTF-8 (CESU-8"),
    (b"a: 1\r\nb: '\xc3\xa9\xc3\xa9\xff'\n", (2, 7), "byte 0xff at byte offset 14"),
    (b"a: 1\rb: \xc0\xaf\n", (2, 4), "byte 0xc0 at byte offset 8"),
    (b"\xff\xfea\x00:\x00", (1, 1), "UTF-16"),
    (b"a: '\xf4\x90\x80\x80'\n", (1, 5), "byte 0xf4 at byte offset 4"),
])
def test_text_that_is_not_utf8_is_refused_with_its_line_column_and_byte_offset(raw: bytes, spot: tuple[int, int],
                                                                             message: str) -> None:
    error = refused(raw)
    assert place(error) == spot and message in error.errors[0].message


@pytest.mark.parametrize(("text", "fmt"), [('{"a": "\\udc80"}', "json"), ("a: b\udc80\n", "yaml")])
def test_a_lone_surrogate_is_refused_with_its_place(text: str, fmt: str) -> None:
    error = refused(text, fmt)
    assert place(error)[0] == 1 and "surrogate" in error.errors[0].message


# --- names that look like others -----------------------------------------------------------------

BASE = HEAD + "rules:\n  - {name: head, match: 'fc.*', lr_mult: 10}\n  - {name: rest, match: '*'}\n"


@pytest.mark.parametrize("name", ["h\u0435ad", "ｈｅａｄ", "\u04bbead", "he\u0430d"])
def test_a_name_that_looks_like_an_inherited_rule_is_reported_not_added_as_a_second_rule(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    child = tmp_path / "child.yaml"
    child.write_text(f"version: 1\nextends: base.yaml\nrules:\n  - {{name: {name}, match: 'fc.*', lr_mult: 5}}\n")
    with pytest.raises(RuleFileError) as caught:
        from lrrules.loader import load
        load(child)
    error = caught.value.errors[0]
    assert (error.path, error.line, error.col) == (str(child), 4, 12)
    assert "looks like 'head'" in error.message and str(tmp_path / "base.yaml") + ":4:12" in error.message
    assert main(["check", str(child)]) == 2 and "Traceback" not in capsys.readouterr().err


def test_names_in_nfc_and_nfd_are_one_name_to_a_reader_and_so_reported() -> None:
    nfc, nfd = unicodedata.normalize("NFC", "bloc\u00e9"), unicodedata.normalize("NFD", "bloc\u00e9")
    error = refused(HEAD + f"rules:\n  - {{name: {nfc}, match: 'a*'}}\n  - {{name: {nfd}, match: 'b*'}}\n")
    assert place(error) == (5, 12) and "looks like" in error.errors[0].message


def test_the_same_name_replaces_the_inherited_rule_as_before(tmp_path: Path) -> None:
    from lrrules.loader import load

    (tmp_path / "base.yaml").write_text(BASE)
    child = tmp_path / "child.yaml"
    child.write_text("version: 1\nextends: base.yaml\nrules:\n  - {name: head, match: 'fc.*', lr_mult: 5}\n")
    assert [r.name for r in load(child).rules] == ["head", "rest"]


# --- what is printed -----------------------------------------------------------------------------


def github_escaped(text: str, prop: bool) -> str:
    """GitHub's workflow-command escapes, written from its documentation: % CR LF in data, and also
    ':' and ',' in a property."""
    out = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return out.replace(":", "%3A").replace(",", "%2C") if prop else out


HOSTILE = ["r\n::error file=x.yaml::pwned.yaml", "a%0A::warning::b.yaml", "c,line=1:.yaml", "e\x1b[2Jf.yaml",
           "g\u202eh.yaml", "i\r::add-mask::j.yaml", "k\x9b31m.yaml", "l\u2028::error::m.yaml"]


@pytest.mark.parametrize("path", HOSTILE)
def test_a_github_annotation_from_a_hostile_name_is_one_command_that_shows_the_name(path: str) -> None:
    from lrrules.check import Finding
    from lrrules.report import findings_github

    message = f"unmatched: 1 tensors claimed by no rule\n  {path}"
    out = findings_github([Finding(path, 3, 5, "error", message)])
    assert "\n" not in out and "\r" not in out and all(c.isprintable() for c in out)
    head, _, data = out.partition("::")[2].partition("::")
    assert head.startswith("error file=") and head.count(",") == 3  # four properties, whatever the name holds
    def shown(text: str, lines: bool) -> str:  # a name as a terminal may show it: every unprintable escaped
        return "".join(c if c.isprintable() or c == "\n" and lines else f"\\u{ord(c):04x}" if ord(c) > 0xFF
                       else f"\\x{ord(c):02x}" for c in text)

    assert head == f"error file={github_escaped(shown(path, False), True)},line=3,col=5,title=lrrules"
    assert data == github_escaped(shown(message, True), False)


@pytest.mark.parametrize("path", HOSTILE)
def test_a_finding_with_a_hostile_file_name_is_printed_on_one_line(path: str) -> None:
    from lrrules.check import Finding

    text = Finding(path, 3, 5, "error", "unknown key 'x'").text()
    assert "\n" not in text and all(c.isprintable() for c in text) and text.endswith(":3:5: unknown key 'x'")


# --- generated text ------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

LIARS = ["\x85", "\u2028", "\u2029", "\ufeff", "\u200b", "\u200c", "\u200d", "\u2060", "\u202e", "\u2066", "\x1b",
         "\x9b", "\r", "\r\n", "\x00", "\u00a0", "\ud800", "е", "ｈ", "e\u0301", "&a", "*a", "!!python/name:x ",
         "%YAML 1.1\n", "%TAG !p! tag:yaml.org,2002:python/\n", "'", '"', "\\u2028", "#", ": ", "- ", "[", "{"]
LINES = ["version: 1", "defaults: {lr: 0.1}", "rules:", "  - {name: head, match: 'fc.*', lr_mult: 10}",
         "  - name: rest", "    match: '*'", "vars: {x: 010}", "x: &a [1]", "y: *a"]


def pieces() -> st.SearchStrategy[str]:
    line = st.sampled_from(LINES)
    liar = st.sampled_from(LIARS)
    return st.lists(st.one_of(line, liar, st.text(max_size=3)), max_size=12).map(
        lambda parts: "\n".join(LINES[:2]) + "\n" + "".join(parts))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces(), st.sampled_from(["yaml", "json"]))
def test_generated_lying_text_loads_or_is_a_located_error_that_prints_nothing_raw(text: str, fmt: str) -> None:
    if fmt == "json":  # the same characters inside a JSON document
        text = '{"version": 1, "defaults": {"lr": 0.1}, "rules": [{"name": ' + json.dumps(text)[:-1] + \
               text[-3:] + '"}]}'
    try:
        loads(text.encode("utf-8", "surrogatepass"), "r\x1b[2J\u202e.yaml", fmt)
    except RuleFileError as exc:
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        for error in exc.errors:
            assert 0 <= error.line <= len(lines)
            if error.line:
                assert 1 <= error.col <= len(lines[error.line - 1]) + 1
        shown = str(exc)
        assert all(c.isprintable() or c == "\n" for c in shown), ascii(shown)
        assert len(shown.splitlines()) >= len(exc.errors)
    except LrrulesError:
        pass


def test_check_warns_when_a_rule_matches_nothing_and_parameter_names_are_not_in_nfc(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    nfc, nfd = unicodedata.normalize("NFC", "bloc\u00e9"), unicodedata.normalize("NFD", "bloc\u00e9")
    assert nfc != nfd
    checkpoint = tmp_path / "m.safetensors"
    save_file({f"{nfd}.weight": torch.zeros(2), "fc.weight": torch.zeros(2)}, checkpoint)
    rules = tmp_path / "r.yaml"
    rules.write_text(HEAD + f"rules:\n  - {{name: b, match: '{nfc}.*', lr_mult: 2}}\n  - {{name: rest, fallback: true}}\n")
    assert main(["check", str(rules), "--model", str(checkpoint)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "not in Unicode NFC" in err and "rule 'b' matches no parameter" in err
    assert main(["check", str(rules), "--model", str(checkpoint), "--strict"]) == 1
