"""Every bad input through the command line: exit code 2, a message with the file and the place,
never a traceback, never a hang, and nothing resolved."""

from __future__ import annotations

import lrrules
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lrrules.cli import main

HEAD = "version: 1\ndefaults: {lr: 0.1}\nrules:\n"
BOMB = "\n".join(
    ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
)

CASES = [
    # name, file name, content, message, line
    ("malformed-yaml", "r.yaml", "version: 1\ndefaults: {lr: 0.1\n", "invalid YAML", 3),
    ("malformed-json", "r.json", '{"version": 1,\n "defaults": {"lr": 0.1,}}', "invalid JSON", 2),
    ("empty-file", "r.yaml", "", "is empty", 1),
    ("non-utf8", "r.yaml", b"version: 1\n# caf\xe9\n", "not UTF-8", 2),
    ("several-documents", "r.yaml", HEAD + "  - {name: a, match: '*'}\n---\nversion: 1\n", "several YAML documents", 5),
    ("python-object-tag", "r.yaml", "version: !!python/object/apply:os.system ['echo pwned']\n", "not allowed", 1),
    ("python-name-tag", "r.yaml", "version: 1\ndefaults: !!python/name:builtins.eval\n", "not allowed", 2),
    ("alias-bomb", "r.yaml", BOMB + "\n", "too many aliases", 0),
    ("deep-nesting", "r.yaml", "version: 1\nrules: " + "[" * 3000 + "]" * 3000 + "\n", "nests deeper", 2),
    ("unsupported-version", "r.yaml", "version: 3\ndefaults: {lr: 0.1}\n", "unsupported version 3", 1),
    ("unknown-key", "r.yaml", "version: 1\ndefaults: {lr: 0.1}\nrulez: []\n", "unknown key 'rulez'", 3),
    ("misspelt-key", "r.yaml", HEAD + "  - {name: a, match: '*', lr_mlt: 2}\n", "did you mean 'lr_mult'", 4),
    ("wrong-type", "r.yaml", "version: 1\ndefaults: {lr: fast}\n", "valid number", 2),
    ("duplicate-rule-names", "r.yaml", HEAD + "  - {name: a, match: 'x*'}\n  - {name: a, match: 'y*'}\n",
     "used twice", 5),
    ("duplicate-keys", "r.yaml", "version: 1\nversion: 1\n", "duplicate key 'version'", 2),
    ("two-fallbacks", "r.yaml", HEAD + "  - {name: a, fallback: true}\n  - {name: b, fallback: true}\n",
     "second fallback", 5),
    ("lr-with-lr-mult", "r.yaml", HEAD + "  - {name: a, match: '*', lr: 1, lr_mult: 2}\n", "not both", 4),
    ("freeze-with-an-lr", "r.yaml", HEAD + "  - {name: a, match: '*', freeze: true, lr: 1}\n", "freeze", 4),
    ("negative-value", "r.yaml", HEAD + "  - {name: a, match: '*', lr: -1}\n", "negative", 4),
    ("nan-value", "r.yaml", HEAD + "  - {name: a, match: '*', lr: .nan}\n", "not a finite number", 4),
    ("infinite-value", "r.yaml", HEAD + "  - {name: a, match: '*', weight_decay: .inf}\n", "not a finite", 4),
    ("bad-regex", "r.yaml", HEAD + "  - {name: a, match: {regex: '[a-'}}\n", "invalid regex", 4),
    ("formula-syntax", "r.yaml", HEAD + "  - {name: a, match: '*', lr_mult: '2 *'}\n", "syntax error", 4),
    ("formula-unknown-name", "r.yaml", HEAD + "  - {name: a, match: '*', lr_mult: '2 ** dpth'}\n",
     "unknown name 'dpth'", 4),
    ("formula-attribute", "r.yaml", HEAD + "  - {name: a, match: '*', lr_mult: 'depth.__class__'}\n",
     "attribute access", 4),
    ("formula-call", "r.yaml", HEAD + "  - {name: a, match: '*', lr_mult: \"__import__('os')\"}\n",
     "unknown function '__import__'", 4),
    ("formula-huge-power", "r.yaml", HEAD + "  - {name: a, match: '*', lr_mult: '9 ** 9 ** 9'}\n", "too large", 4),
    ("formula-deep-nesting", "r.yaml", HEAD + "  - {name: a, match: '*', lr_mult: '" + "-" * 200 + "1'}\n",
     "nests more than", 4),
]


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize(("name", "filename", "content", "message", "line"), CASES, ids=[c[0] for c in CASES])
def test_bad_rule_file_exits_2_with_its_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, filename: str, content: str, message: str,
    line: int,
) -> None:
    if name == "alias-bomb":
        message = "values (too many aliases?)"
    path = write(tmp_path, filename, content)
    code = main(["check", str(path)])
    out, err = capsys.readouterr()
    assert code == 2 and not out
    assert "Traceback" not in err
    assert message in err
    assert err.startswith(f"{path}:{line}:" if line else f"{path}:")


def resolve(tmp_path: Path, capsys: pytest.CaptureFixture[str], rules: str, model: str = "resnet18") -> tuple[int, str]:
    path = write(tmp_path, "r.yaml", rules)
    code = main(["resolve", str(path), "--model", model])
    out, err = capsys.readouterr()
    assert not out, "nothing is resolved"
    assert "Traceback" not in err
    return code, err


def test_catastrophic_regex_is_refused_where_it_stands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "long.safetensors"
    save_file({"a" * 60 + "!": torch.zeros(2)}, checkpoint)
    code, err = resolve(tmp_path, capsys, HEAD + "  - {name: evil, match: {regex: '^(a|aa)+$'}}\n", str(checkpoint))
    assert code == 2 and ":4:35:" in err and "exponentially many ways" in err


def test_division_by_zero_when_resolving(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = resolve(tmp_path, capsys, HEAD + "  - {name: a, match: '*', lr_mult: '1 / layer'}\n")
    assert code == 2 and "division by zero for parameter 'conv1.weight' (layer=0)" in err and ":4:" in err


def test_optimizer_type_that_is_no_optimizer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "r.yaml", "version: 1\ndefaults: {lr: 0.1}\noptimizer: {type: system}\nrules:\n"
                                     "  - {name: a, match: '*'}\n")
    assert main(["check", str(path), "--model", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert "names no optimizer" in err and "Traceback" not in err


def test_optimizer_type_cannot_name_a_module_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "r.yaml", "version: 1\ndefaults: {lr: 0.1}\noptimizer: {type: os.system}\n")
    assert main(["check", str(path)]) == 2
    assert "String should match pattern" in capsys.readouterr().err


def test_model_name_that_does_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = resolve(tmp_path, capsys, HEAD + "  - {name: a, match: '*'}\n", model="resnet_eighteen")
    assert code == 2 and "is not a timm model name" in err


def test_json_rule_file_errors_point_into_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "r.json", json.dumps({"version": 1, "defaults": {"lr": 0.1},
                                                  "rules": [{"name": "a", "match": "*", "lr_mul": 2}]}, indent=1))
    assert main(["check", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"{path}:10:4: rules[0].lr_mul")


# --- hangs and resource limits -------------------------------------------------------------------

from lrrules.errors import LrrulesError, RuleFileError  # noqa: E402
from lrrules.loader import load, loads  # noqa: E402
from lrrules.resolver import resolve_params  # noqa: E402
from tests.conftest import params as make_params  # noqa: E402

SLOW_REGEXES = [
    r"(?x) (.|.|.) + [A-Z]$",  # verbose mode: the space hid the repeat of a group
    r"(?x:(.|.|.) +)[A-Z]$",  # a scoped flag
    "(?x)(.|.|.) # a comment\n +[A-Z]$",
    r"(?i)^(a|aa)+$",
    r"^(?:a|a(?:a))+\d$",
    r"^(?P<x>a|aa)*$",
]


@pytest.mark.parametrize("pattern", SLOW_REGEXES)
def test_every_catastrophic_regex_is_refused_whatever_its_flags(pattern: str) -> None:
    with pytest.raises(RuleFileError, match="exponentially many ways"):
        loads(json.dumps({"version": 1, "defaults": {"lr": 0.1}, "unmatched": "defaults",
                          "rules": [{"name": "evil", "match": {"regex": pattern}}]}), fmt="json")


def test_a_catastrophic_regex_in_layer_patterns_is_refused_at_its_pattern(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\ndefaults: {lr: 0.1}\nunmatched: defaults\nlayers:\n  by: patterns\n"
                    "  patterns:\n    - 'stem.*'\n    - {regex: '(?x)^(a|aa) +$'}\n")
    with pytest.raises(RuleFileError, match="exponentially many ways") as caught:
        load(path)
    error = caught.value.errors[0]
    assert (error.path, error.line, error.loc) == (str(path), 8, ("layers", "patterns", 1, "regex", 0))


def test_each_regex_is_compiled_once_per_rule_set_even_beyond_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    import regex

    from lrrules import regexes

    count = 0
    real = regex.compile

    def counting(pattern: str, *args: object, **kw: object) -> object:
        nonlocal count
        count += 1
        return real(pattern, *args, **kw)

    regexes.compile_regex.cache_clear()
    monkeypatch.setattr(regexes.regex, "compile", counting)
    n = 5000
    rules = loads(json.dumps({"version": 1, "defaults": {"lr": 0.1}, "unmatched": "defaults",
                              "rules": [{"name": f"r{i}", "match": {"regex": f"^w{i}x$"}} for i in range(n)]}),
                  fmt="json")
    resolve_params(rules, make_params(*((f"p{i}", (2,), "Linear") for i in range(40))))
    assert count <= 3 * n  # not once per pattern and name (200,000)


def test_a_json_rule_file_near_the_size_limit_is_read_in_one_pass(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # ~800 KiB and 60,000 values: counting the newlines before every value made this take minutes.
    rules = [{"name": f"r{i}", "match": f"x{i}.*", "lr_mult": 1.5} for i in range(12000)]
    path = write(tmp_path, "r.json", json.dumps({"version": 1, "defaults": {"lr": 0.1}, "rules": rules}, indent=1))
    assert main(["check", str(path)]) == 0


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_the_count_of_values_is_limited_in_json_as_in_yaml(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    from lrrules import reader

    monkeypatch.setattr(reader, "MAX_NODES", 50)
    text = json.dumps({"version": 1, "defaults": {"lr": 0.1}, "vars": {f"v{i}": i for i in range(60)}})
    with pytest.raises(RuleFileError, match="more than 50 values") as caught:
        loads(text, "r." + fmt, fmt)
    assert caught.value.errors[0].line == 1


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "version: 1\ndefaults: &d {lr: 0.1, x: *d}\n",
                                  "a: &a {b: [1, {c: [*a]}]}\n"])
def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   text: str) -> None:
    path = write(tmp_path, "r.yaml", text)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:") and "refers to the list or mapping that holds it" in err


def test_a_rule_file_that_is_not_a_regular_file_is_refused(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import os

    fifo = tmp_path / "r.yaml"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer for ever
    for path in (str(fifo), "/dev/null", "/dev/zero"):
        assert main(["check", path]) == 2
        assert capsys.readouterr().err == f"{path}: is not a regular file (a pipe, device or socket); " \
                                          "give the path of a rule file\n"
    assert main(["check", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


# --- extends -------------------------------------------------------------------------------------

BASE = "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: '*'}\n"


@pytest.mark.parametrize(
    ("files", "message", "where"),
    [
        ({"r.yaml": "version: 1\nextends: []\n"}, "lists no file", "r.yaml:2:10"),
        ({"r.yaml": "version: 1\nextends: \"a\\0b\"\n"}, "without NUL", "r.yaml:2:10"),
        ({"r.yaml": "version: 1\nextends: ''\n"}, "needs a file name", "r.yaml:2:10"),
        ({"r.yaml": "version: 1\nextends: [loop]\n"}, "cannot be resolved (a symlink loop?)", "r.yaml:2:11"),
        ({"r.yaml": "version: 1\nextends: b.yaml\n", "b.yaml": "version: 2\ndefaults: {lr: 1}\n"},
         "version 2 differs from version 1", "b.yaml:1:10"),
        ({"r.yaml": "version: 1\nextends: b.yaml\n", "b.yaml": "version: true\ndefaults: {lr: 1}\n"},
         "version True differs", "b.yaml:1:10"),
        ({"r.yaml": "version: 1\nextends: b.yaml\n", "b.yaml": "- 1\n- 2\n"}, "not a list", "b.yaml:1:1"),
        ({"r.yaml": "version: 1\nextends: b.yaml\n", "b.yaml": "just text\n"}, "not a str", "b.yaml:1:1"),
        ({"r.yaml": "version: 1\nextends: b.yaml\nrules:\n  - {name: a, remove: true, lr: 3}\n", "b.yaml": BASE},
         "only names what it removes; drop lr", "r.yaml:4:23"),
        ({"r.yaml": "version: 1\nextends: b.yaml\nrules:\n  - {name: a, remove: true, match: x, freeze: true}\n",
          "b.yaml": BASE}, "drop freeze, match", "r.yaml:4:23"),
    ],
)
def test_bad_extends_is_an_error_in_the_right_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   files: dict[str, str], message: str, where: str) -> None:
    import os

    for name, text in files.items():
        write(tmp_path, name, text)
    os.symlink(tmp_path / "loop2", tmp_path / "loop")
    os.symlink(tmp_path / "loop", tmp_path / "loop2")
    assert main(["check", str(tmp_path / "r.yaml")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.startswith(f"{tmp_path}/{where}:") or err.startswith(f"{tmp_path / where.split(':')[0]}:"), err
    assert f"{where.split(':', 1)[1]}:" in err.splitlines()[0]


def test_each_extended_file_is_read_once_however_often_it_is_named(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from lrrules import inherit

    write(tmp_path, "f0.yaml", BASE)
    for i in range(1, 8):  # each file names its parent three times: 3**7 reads without the memo
        write(tmp_path, f"f{i}.yaml", f"version: 1\nextends: [f{i - 1}.yaml, f{i - 1}.yaml, f{i - 1}.yaml]\n")
    reads: list[str] = []
    real = inherit.read

    def counting(path: object) -> object:
        reads.append(str(path))
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(inherit, "read", counting)
    rules = load(tmp_path / "f7.yaml")
    assert [r.name for r in rules.rules] == ["a"]
    assert len(reads) == len(set(reads)) == 7


def test_a_chain_of_extends_deeper_than_the_limit_is_an_error_naming_where_it_started(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lrrules.inherit import MAX_EXTENDS_DEPTH

    depth = MAX_EXTENDS_DEPTH * 40  # deep enough to exhaust the stack of a recursive reader
    write(tmp_path, f"c{depth}.yaml", BASE)
    for i in range(depth):
        write(tmp_path, f"c{i}.yaml", f"version: 1\nextends: c{i + 1}.yaml\n")
    assert main(["check", str(tmp_path / "c0.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"more than {MAX_EXTENDS_DEPTH} files deep from {tmp_path / 'c0.yaml'}" in err
    assert "Traceback" not in err and "RecursionError" not in err
    # the place is the extends line of the last file a chain may hold (c0 .. c31 for a limit of 32)
    assert err.startswith(f"{tmp_path / f'c{MAX_EXTENDS_DEPTH - 1}.yaml'}:2:10:"), err


def test_a_chain_as_deep_as_the_limit_still_loads(tmp_path: Path) -> None:
    from lrrules.inherit import MAX_EXTENDS_DEPTH

    last = MAX_EXTENDS_DEPTH - 1  # a chain of MAX_EXTENDS_DEPTH files, the one loaded included
    write(tmp_path, f"c{last}.yaml", BASE)
    for i in range(last):
        write(tmp_path, f"c{i}.yaml", f"version: 1\nextends: c{i + 1}.yaml\n")
    assert [r.name for r in load(tmp_path / "c0.yaml").rules] == ["a"]


@pytest.mark.parametrize("shape", ["one-list", "tree"])
def test_extends_reading_more_files_than_the_limit_is_an_error_not_a_hang(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], shape: str) -> None:
    from lrrules.inherit import MAX_EXTENDS_FILES

    count = MAX_EXTENDS_FILES * 8
    for i in range(count):
        write(tmp_path, f"p{i}.yaml", f"version: 1\nrules:\n  - {{name: r{i}, match: 'x{i}.*'}}\n")
    if shape == "one-list":
        write(tmp_path, "a.yaml", "version: 1\nextends: [" + ", ".join(f"p{i}.yaml" for i in range(count)) + "]\n"
              "defaults: {lr: 1}\n")
    else:  # forty files of fifty parents each
        for k in range(40):
            names = ", ".join(f"p{i}.yaml" for i in range(k * 50, k * 50 + 50))
            write(tmp_path, f"mid{k}.yaml", f"version: 1\nextends: [{names}]\n")
        write(tmp_path, "a.yaml", "version: 1\nextends: [" + ", ".join(f"mid{k}.yaml" for k in range(40)) + "]\n"
              "defaults: {lr: 1}\n")
    assert main(["check", str(tmp_path / "a.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"more than {MAX_EXTENDS_FILES} files in all from {tmp_path / 'a.yaml'}" in err and "Traceback" not in err


def test_many_parents_merge_by_name_with_later_ones_winning(tmp_path: Path) -> None:
    from lrrules.inherit import MAX_EXTENDS_FILES

    count = MAX_EXTENDS_FILES - 1
    for i in range(count):  # every parent redefines rule 'shared' and adds one of its own
        write(tmp_path, f"p{i}.yaml", f"version: 1\nrules:\n  - {{name: shared, match: 'a.*', lr_mult: {i + 1}}}\n"
              f"  - {{name: own{i}, match: 'b{i}.*'}}\n")
    write(tmp_path, "a.yaml", "version: 1\nextends: [" + ", ".join(f"p{i}.yaml" for i in range(count)) + "]\n"
          "defaults: {lr: 1}\n")
    rules = load(tmp_path / "a.yaml")
    by_name = {r.name: r for r in rules.rules}
    assert len(rules.rules) == count + 1
    assert by_name["shared"].lr_mult == count  # the last parent's
    assert [r.name for r in rules.rules][:2] == ["shared", "own0"]  # the inherited place is kept


def test_a_name_used_twice_in_a_child_is_still_reported_twice(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "b.yaml", BASE)
    write(tmp_path, "r.yaml", "version: 1\nextends: b.yaml\nrules:\n  - {name: z, match: 'x.*'}\n"
          "  - {name: z, match: 'y.*'}\n")
    assert main(["check", str(tmp_path / "r.yaml")]) == 2
    err = capsys.readouterr().err
    assert "'z' is used twice" in err, err


def git_repo(tmp_path: Path) -> object:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    return git


def test_the_parents_of_a_revision_come_from_the_same_revision(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    git = git_repo(tmp_path)
    write(tmp_path, "base.yaml", BASE)
    (tmp_path / "conf").mkdir()
    write(tmp_path, "conf/child.yaml", "version: 1\nextends: ../base.yaml\n")
    git("add", ".")  # type: ignore[operator]
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")  # type: ignore[operator]
    write(tmp_path, "base.yaml", BASE.replace("0.1", "0.5"))
    monkeypatch.chdir(tmp_path)
    assert main(["show", "HEAD:conf/child.yaml", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["defaults"] == {"lr": 0.1}
    assert main(["show", "conf/child.yaml", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["defaults"] == {"lr": 0.5}


@pytest.mark.parametrize("spec", ["--output=written:x", "-o:x", "--textconv:x", "HEAD:\0x"])
def test_a_revision_can_never_reach_git_as_an_option(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    git_repo(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--", spec]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err
    assert list(tmp_path.iterdir()) == [tmp_path / ".git"]


# --- numbers ---------------------------------------------------------------------------------------

DIGITS_401 = "1" * 401


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("version: 1\ndefaults: {lr: 1.0e300}\nrules:\n  - {name: a, match: '*', lr_mult: 1.0e10}\n",
         "lr inf", 4),
        ("version: 1\ndefaults: {lr: 1.0e300}\nrules:\n  - {name: a, match: '*', lr_mult: '1e10 * (layer + 1)'}\n",
         "lr inf", 4),
        ("version: 1\ndefaults: {lr: 0.1, weight_decay: 1.0e300}\nrules:\n  - {name: a, match: '*'}\n"
         "modifiers:\n  - {name: m, match: '*', weight_decay_mult: 1.0e10}\n", "weight decay inf", 4),
        ("version: 1\ndefaults: {lr: 1.0e-300}\nrules:\n  - {name: a, match: '*', lr: 1.0e300}\n",
         "(xinf base)", 4),
        ("version: 1\ndefaults: {lr: 1.0e300}\nrules:\n  - {name: a, match: '*'}\n"
         "modifiers:\n  - {name: m, match: '*', lr_mult: 1.0e10}\n  - {name: n, match: '*', lr_mult: 1.0e10}\n",
         "lr inf", 4),
    ],
)
def test_a_final_value_that_overflows_is_an_error_not_an_optimizer_with_inf(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str, line: int) -> None:
    code, err = resolve(tmp_path, capsys, text)
    assert code == 2 and message in err and "must be finite" in err
    assert err.startswith(f"{tmp_path / 'r.yaml'}:{line}:")


def test_build_optimizer_refuses_an_overflowing_lr(tmp_path: Path) -> None:
    from lrrules import build_optimizer

    path = write(tmp_path, "r.yaml", "version: 1\ndefaults: {lr: 1.0e300}\nrules:\n  - {name: a, match: '*', "
                                     "lr_mult: 1.0e10}\n")
    with pytest.raises(LrrulesError, match="must be finite"):
        build_optimizer(path, torch.nn.Linear(2, 2))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (DIGITS_401, "is too large"),
        ("9" * 5000, "is too large"),
        ("-" + DIGITS_401, "is too large"),
        ("1e400", "is too large"),
        ("0x" + "f" * 300, "is too large"),
        (f"'{DIGITS_401}'", "is too large"),  # in a formula
        ("'1e308 * 10'", "finite number >= 0"),
        ("'0 - 1'", "finite number >= 0"),
        ("'-1e-9'", "finite number >= 0"),
        ("'exp(1000)'", "too large"),
        ("'1e308 * 10 - 1e308 * 10'", "finite number >= 0"),
        ("'123456789 ** 2 * " + " * ".join(["99999999999"] * 30) + "'", "finite number >= 0"),
        ("'" + " * ".join([DIGITS_401[:200]] * 2) + "'", "too large for a float"),
        ("true", "a boolean is not a number"),
    ],
)
def test_a_number_or_constant_formula_out_of_range_is_caught_when_the_file_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str) -> None:
    path = write(tmp_path, "r.yaml", f"version: 1\ndefaults: {{lr: 0.1}}\nrules:\n  - {{name: a, match: '*', "
                                     f"lr_mult: {value}}}\n")
    assert main(["check", str(path)]) == 2  # no model: the file alone shows it
    err = capsys.readouterr().err
    assert message in err and err.startswith(f"{path}:4:") and "Traceback" not in err


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_huge_integers_in_either_format_name_their_place(fmt: str) -> None:
    text = '{"version": 1,\n "defaults": {"lr": %s}}' % ("7" * 5000)
    with pytest.raises(RuleFileError, match="is too large") as caught:
        loads(text, "r." + fmt, fmt)
    assert (caught.value.errors[0].line, caught.value.errors[0].col) == (2, 21)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("010", 10.0), ("0o17", 15.0), ("0x10", 16.0), ("1.5e-3", 1.5e-3), ("+2", 2.0), ("007", 7.0)],
)
def test_numbers_are_read_as_yaml_1_2_and_json_read_them(value: str, expected: float) -> None:
    rules = loads(f"version: 1\ndefaults: {{lr: 0.1}}\nvars: {{v: {value}}}\n")
    assert rules.vars["v"] == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\ndefaults: {lr: 0.1}\nvars: {v: 1:30}\n", "valid number"),  # base 60 in YAML 1.1
        ("version: 1\ndefaults: {lr: 0.1}\nvars: {v: 1_000}\n", "valid number"),
        ("version: 1\ndefaults: {lr: 0.1}\nvars: {v: '2'}\n", "valid number"),
        ("version: 1\ndefaults: {lr: 0.1}\nvars: {v: !!int 1:30}\n", "not a YAML 1.2 int"),
        ("version: 1\ndefaults: {lr: 0.1}\nvars: {v: !!float yes}\n", "not a YAML 1.2 float"),
        ("version: 1\ndefaults: {lr: true}\n", "a boolean is not a number"),
        ("version: 1\ndefaults: {lr: 0.1, eps: false}\nvars: {v: on}\n", "valid number"),
        ("version: true\ndefaults: {lr: 0.1}\n", "unsupported version True"),
        ("version: 1\ndefaults: {lr: 0.1}\nvars: {v: true}\n", "a boolean is not a number"),
        ("version: 1\ndefaults: {lr: 0.1}\nlayers: {by: module, level: true}\n", "a boolean is not a number"),
        ("version: 1\ndefaults: {lr: 0.1}\nphases:\n  - {from_epoch: true, freeze: '*'}\n", "a boolean"),
        ("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: {ndim: [true]}}\n", "a boolean"),
        ("version: 1\ndefaults: {lr: 0.1, betas: [.inf, 0.9]}\n", "finite number"),
        ("version: 1\ndefaults: {lr: 0.1, betas: [0.9, .nan]}\n", "finite number"),
        ("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: '*', options: {betas: [true, 1]}}\n",
         "a boolean"),
        ("version: 1\ndefaults: {lr: 0.1, eps: 'yes'}\n", "valid number"),
    ],
)
def test_yaml_1_1_number_quirks_and_booleans_are_not_numbers(text: str, message: str) -> None:
    with pytest.raises(RuleFileError, match=re.escape(message)) as caught:
        loads(text)
    assert caught.value.errors[0].line > 0


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("betas: [0.9]", "takes a list of 2 numbers (such as [0.9, 0.999]), got a list of 1"),
        ("betas: [0.9, 0.99, 0.9]", "got a list of 3"),
        ("betas: 0.9", "got 0.9"),
        ("eps: [1.0e-8, 1.0e-8]", "'eps' of AdamW takes one number, not a list"),
    ],
)
def test_list_options_have_the_length_the_optimizer_expects(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            option: str, message: str) -> None:
    path = write(tmp_path, "r.yaml", f"version: 1\ndefaults: {{lr: 0.1, {option}}}\nrules:\n  - {{name: a, match: '*'}}\n")
    assert main(["check", str(path), "--model", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert message in err and f"{path}:2:" in err


def test_a_list_option_in_a_rule_is_checked_too(tmp_path: Path) -> None:
    from lrrules import build_optimizer

    path = write(tmp_path, "r.yaml", "version: 1\ndefaults: {lr: 0.1}\nrules:\n"
                                     "  - {name: a, match: '*', options: {betas: [0.9]}}\n")
    with pytest.raises(LrrulesError, match=r"r.yaml:4:\d+: option 'betas'"):
        build_optimizer(path, torch.nn.Linear(2, 2))


@pytest.mark.parametrize("value", ["1" * 401, "9" * 5000, "1e400", "true", "yes", "on", "NaN", "Infinity", ".inf",
                                   "-.nan", "1:30", "1_000", "0b11", "", "!!float 1"])
def test_set_takes_only_finite_numbers_as_the_file_writes_them(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               value: str) -> None:
    path = write(tmp_path, "r.yaml", "version: 1\ndefaults: {lr: 0.1}\nvars: {decay: 0.5}\n")
    assert main(["check", str(path), "--set", f"decay={value}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "--set takes name=number" in err or "a var is a finite number" in err or "too large" in err


@pytest.mark.parametrize("value", [10**400, float("inf"), float("nan"), True, "0.5"])
def test_overrides_take_only_finite_numbers(value: object) -> None:
    with pytest.raises(RuleFileError, match="a var is a finite number"):
        loads("version: 1\ndefaults: {lr: 0.1}\nvars: {decay: 0.5}\n", overrides={"decay": value})  # type: ignore[dict-item]


# --- output ------------------------------------------------------------------------------------------

NASTY_NAMES = ["a\x1b[2J.w", "b\x1b]0;owned\x07.w", "c\r\n.w", "d\u202e.w", "e\x9b31m.w", "f\u2028.w", "g\x00.w"]


def nasty_checkpoint(tmp_path: Path) -> Path:
    checkpoint = tmp_path / "nasty.safetensors"
    save_file({name: torch.zeros(2) for name in NASTY_NAMES}, checkpoint)
    return checkpoint


@pytest.mark.parametrize(
    "argv",
    [
        ["params"],
        ["resolve", "{rules}"],
        ["resolve", "{rules}", "--params"],
        ["explain", "{rules}", "*"],
        ["check", "{rules}"],
        ["diff", "{rules}", "{rules2}"],
    ],
)
def test_no_control_character_from_a_name_reaches_the_terminal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rules = write(tmp_path, "r\x1b[31m.yaml", "version: 1\ndefaults: {lr: 0.1}\nunmatched: defaults\nrules:\n"
                                              "  - {name: \"x\\e[2J\", match: 'a*'}\n")
    rules2 = write(tmp_path, "r2.yaml", "version: 1\ndefaults: {lr: 0.2}\nunmatched: defaults\n")
    args = [a.format(rules=rules, rules2=rules2) for a in argv]
    main([*args, "--model", str(nasty_checkpoint(tmp_path))])
    out, err = capsys.readouterr()
    for text in (out, err):
        assert not any(c in text for c in "\x1b\x07\r\u202e\x9b\u2028\x00"), text
    assert "\\x1b" in out


def test_an_error_naming_a_parameter_cannot_rewrite_the_error_line(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, err = resolve(tmp_path, capsys, HEAD + "  - {name: a, match: '*', lr_mult: '1 / (ndim - ndim)'}\n",
                        str(nasty_checkpoint(tmp_path)))
    assert code == 2 and "division by zero for parameter 'a\\x1b[2J.w'" in err
    assert len(err.strip().splitlines()) == 3  # the message, the formula and its caret


def test_a_rule_file_key_or_file_name_with_escapes_is_escaped_in_errors(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "r\x1b[2J.yaml", 'version: 1\ndefaults: {lr: 0.1}\n"bad\\e]0;x\\a\\nkey": 1\n')
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "r\\x1b[2J.yaml:3:1:" in err
    assert len(err.strip().splitlines()) == 1


def test_csv_neutralises_formulas_and_quotes_carriage_returns() -> None:
    from lrrules.tables import to_csv

    rows = [{"name": n, "lr": -0.5, "shape": [2]} for n in ("=1+2", "+x", "-y", "@SUM(A1)", "\tz", "a\rb", "ok")]
    text = to_csv(rows)
    import csv as csv_module
    import io

    read = list(csv_module.DictReader(io.StringIO(text)))
    assert [r["name"] for r in read] == ["'=1+2", "'+x", "'-y", "'@SUM(A1)", "'\tz", "a\rb", "ok"]
    assert [r["lr"] for r in read] == ["-0.5"] * 7  # a number stays a number, even a negative one
    assert '"a\rb"' in text


@pytest.mark.slow  # a real subprocess that imports torch
def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    import subprocess
    import sys

    checkpoint = tmp_path / "many.safetensors"
    save_file({f"block{i}.weight": torch.zeros(1) for i in range(6000)}, checkpoint)
    proc = subprocess.Popen([sys.executable, "-m", "lrrules", "params", "--model", str(checkpoint)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == ""


def test_a_broken_pipe_in_process_returns_the_pipe_code(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    class Closed:
        def write(self, text: str) -> int:
            raise BrokenPipeError

        def flush(self) -> None:
            raise BrokenPipeError

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["schema"]) == 141


@pytest.mark.parametrize("argv", [["schema", "-o", "{missing}/x.json"], ["schema", "-o", "{dir}"],
                                  ["init", "--model", "resnet18", "-o", "{missing}/x.yaml"]])
def test_an_output_file_that_cannot_be_written_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         argv: list[str]) -> None:
    args = [a.format(missing=tmp_path / "missing", dir=tmp_path) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrrules: error: ") and "Traceback" not in err and str(tmp_path) in err


# --- names and variables -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "vars_", "taken"),
    [("decay", "{decay: 0.5}", "a var of this file"), ("pi", "{}", "a formula constant"),
     ("e", "{}", "a formula constant"), ("depth", "{}", "a formula variable"),
     ("max", "{}", "a formula function"), ("base_lr", "{}", "a formula variable")],
)
def test_a_regex_group_named_like_a_var_or_constant_is_an_error_at_the_group(group: str, vars_: str,
                                                                             taken: str) -> None:
    text = (f"version: 1\ndefaults: {{lr: 0.1}}\nvars: {vars_}\nrules:\n"
            f"  - {{name: a, match: {{regex: '^b(?P<{group}>\\d)'}}, lr_mult: 2}}\n")
    with pytest.raises(RuleFileError, match=f"regex group '{group}' has the name of {taken}") as caught:
        loads(text)
    error = caught.value.errors[0]
    assert error.line == 5 and error.expr[error.offset:].startswith(group)


@pytest.mark.parametrize("capture", ["²", "１２", "٣", "7" * 5000, "1" * 16])
def test_a_capture_of_unusual_digits_stays_text(capture: str) -> None:
    rules = loads("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: {regex: '^b(?P<i>.+)$'}}\n")
    plan = resolve_params(rules, make_params((f"b{capture}", (2,), "Linear")))
    assert plan.params[0].captures == {"i": capture}


def test_a_capture_used_in_arithmetic_as_text_is_a_located_error() -> None:
    rules = loads("version: 1\ndefaults: {lr: 0.1}\nrules:\n"
                  "  - {name: a, match: {regex: '^b(?P<i>.+)$'}, lr_mult: '0.5 ** i'}\n")
    with pytest.raises(RuleFileError, match=r"needs numbers, got '²'") as caught:
        resolve_params(rules, make_params(("b²", (2,), "Linear")))
    assert caught.value.errors[0].line == 4


def test_short_ascii_digit_captures_are_still_numbers() -> None:
    rules = loads("version: 1\ndefaults: {lr: 1.0}\nrules:\n"
                  "  - {name: a, match: {regex: '^b(?P<i>\\d+)$'}, lr_mult: '0.5 ** i'}\n")
    plan = resolve_params(rules, make_params(("b3", (2,), "Linear")))
    assert plan.params[0].lr == 0.125


@pytest.mark.parametrize("formula", ["0.5 ** ｄｅｐｔｈ", "ｍａｘ(1, 2)", "ﬁ + 1", "0.5 ** dｅpth", "𝐝𝐞𝐩𝐭𝐡"])
def test_names_in_formulas_are_compared_as_written(formula: str) -> None:
    with pytest.raises(RuleFileError, match="not written in plain letters"):
        loads(f"version: 1\ndefaults: {{lr: 0.1}}\nrules:\n  - {{name: a, match: '*', lr_mult: '{formula}'}}\n")


# --- model sources, resume, nested JSON -----------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


def header_file(tmp_path: Path, header: bytes, size: int | None = None) -> Path:
    import struct

    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(header) if size is None else size) + header)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: header_file(p, b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', 4096),
         "runs past the end"),
        (lambda p: header_file(p, DEEP.encode()), "nests too deeply"),
        (lambda p: header_file(p, b'{"a": {"dtype": "F32", "shape": [-2]}}'), "whole numbers >= 0"),
        (lambda p: header_file(p, b'{"a": {"dtype": "F32", "shape": [2.5]}}'), "whole numbers >= 0"),
        (lambda p: header_file(p, b'{"a": {"dtype": "F32", "shape": [true]}}'), "whole numbers >= 0"),
        (lambda p: header_file(p, b'{"a": {"dtype": "F32", "shape": "22"}}'), "whole numbers >= 0"),
        (lambda p: header_file(p, b'{"a": {"dtype": "F32", "shape": 3}}'), "no dtype and shape"),
        (lambda p: header_file(p, b'{"a": [1]}'), "no dtype and shape"),
        (lambda p: write(p, "m.safetensors.index.json", '{"weight_map": ["a", "b"]}'), "'weight_map' must map"),
        (lambda p: write(p, "m.safetensors.index.json", '{"weight_map": {"a": 3}}'), "'weight_map' must map"),
        (lambda p: write(p, "m.safetensors.index.json", '{"weight_map": {"a": ["x"]}}'), "'weight_map' must"),
        (lambda p: write(p, "m.safetensors.index.json", '{"weight_map": {"a": ""}}'), "'weight_map' must map"),
        (lambda p: write(p, "m.safetensors.index.json", DEEP), "not a sharded checkpoint index"),
        (lambda p: write(p, "m.safetensors.index.json", '[1]'), "not a sharded checkpoint index"),
        (lambda p: write(p, "m.safetensors.index.json", b"\xff\xfe"), "not a sharded checkpoint index"),
    ],
)
def test_a_malformed_checkpoint_is_exit_2_with_the_file_named(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              make: object, message: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    assert main(["params", "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err


@pytest.mark.parametrize("architectures", ['"BertModel"', "[1, 2]", '{"a": "BertModel"}', "[null]"])
def test_a_config_whose_architectures_is_not_a_list_of_names_is_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], architectures: str) -> None:
    pytest.importorskip("transformers")
    write(tmp_path, "config.json", '{"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1, '
                                   '"num_attention_heads": 2, "intermediate_size": 8, '
                                   f'"architectures": {architectures}}}')
    assert main(["params", "--model", f"hf:{tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(tmp_path) in err


@pytest.mark.parametrize("argv", [["check", "{rules}", "--set", "decay=" + DEEP],
                                  ["params", "--model", "resnet18", "--model-arg", "x=" + DEEP]])
def test_deeply_nested_json_on_the_command_line_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rules = write(tmp_path, "r.yaml", "version: 1\ndefaults: {lr: 0.1}\nvars: {decay: 0.5}\n")
    assert main([a.format(rules=rules) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("--set takes" in err or "nests too deeply" in err)


def built(model: torch.nn.Module) -> tuple[torch.optim.Optimizer, dict]:
    from lrrules import build_optimizer

    optimizer = build_optimizer(loads("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: '*'}\n"), model)
    model(torch.zeros(1, 2)).sum().backward()
    optimizer.step()
    return optimizer, optimizer.state_dict()


@pytest.mark.parametrize(
    "record",
    [None, 3, "x", [], {"groups": 3}, {"groups": [3]}, {"groups": [{"params": "weight"}]},
     {"groups": [{"params": [1, 2]}]}, {"groups": [{"params": ["weight", "bias"], "shapes": [[2, 2]]}]},
     {"groups": [{"params": ["weight", "bias"], "shapes": [[2, "2"], [2]]}]},
     {"groups": [{"params": ["weight", "bias"], "shapes": None, "options": []}]}],
)
def test_a_malformed_layout_record_is_a_resume_error(record: object) -> None:
    from lrrules import load_optimizer_state
    from lrrules.resume import ResumeError

    model = torch.nn.Linear(2, 2)
    optimizer, state = built(model)
    state = {**state, "lrrules": record}
    if record is None:
        state["param_groups"] = [{"param_names": 5}]
    with pytest.raises(ResumeError):
        load_optimizer_state(optimizer, state, lrrules.resolve(loads("version: 1\ndefaults: {lr: 0.1}\nrules:\n"
                                                     "  - {name: a, match: '*'}\n"), model))


def test_a_state_dict_that_torch_refuses_is_a_resume_error() -> None:
    from lrrules import load_optimizer_state
    from lrrules.resume import ResumeError

    model = torch.nn.Linear(2, 2)
    optimizer, state = built(model)
    plan = lrrules.resolve(loads("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: '*'}\n"), model)
    with pytest.raises(ResumeError):
        load_optimizer_state(optimizer, {**state, "param_groups": [{"bad": 1}]}, plan)
    with pytest.raises(ResumeError):
        load_optimizer_state(optimizer, [1, 2], plan)  # type: ignore[arg-type]


@pytest.mark.parametrize("change", ["replace", "add", "remove"])
def test_a_parameter_changed_in_the_model_after_resolution_is_not_handed_out(change: str) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    plan = lrrules.resolve(loads("version: 1\ndefaults: {lr: 0.1}\nunmatched: defaults\n"), model)
    if change == "replace":
        model[1] = torch.nn.Linear(2, 2)
    elif change == "add":
        model.extra = torch.nn.Parameter(torch.zeros(1))
    else:
        del model[1]
    with pytest.raises(LrrulesError, match="in the model after the plan was resolved"):
        plan.param_groups()


@pytest.mark.parametrize("pattern", ["((((a{65535}){65535}){65535}){65535})", "(?:a{1000}){1000}",
                                     "(?:(?:a{30000})*){30000}", "(a|b{999999999999999999999})",
                                     "x{10}" * 20001, "[ab]{400}(?:[cd]{400}){400}"])
def test_a_regex_that_unrolls_into_huge_memory_is_refused_before_it_compiles(pattern: str) -> None:
    with pytest.raises(RuleFileError, match="expands to more than 100000 units") as caught:
        loads(json.dumps({"version": 1, "defaults": {"lr": 0.1},
                          "rules": [{"name": "a", "match": {"regex": pattern}}]}), fmt="json")
    assert caught.value.errors[0].line == 1


@pytest.mark.parametrize("pattern", [r"^blocks\.(?P<i>\d{1,3})\.", r"[a-z]{2,8}\d{4}", "(?:ab){500}"])
def test_ordinary_counted_repeats_are_fine(pattern: str) -> None:
    loads(json.dumps({"version": 1, "defaults": {"lr": 0.1}, "rules": [{"name": "a", "match": {"regex": pattern}}]}),
          fmt="json")


def test_many_regexes_just_under_the_limit_cannot_add_up_to_gigabytes() -> None:
    rules = [{"name": f"r{i}", "match": {"regex": f"(?:a{i}b){{20000}}"}} for i in range(100)]
    with pytest.raises(RuleFileError, match="together expand by more than 200000 units"):
        loads(json.dumps({"version": 1, "defaults": {"lr": 0.1}, "rules": rules}), fmt="json")
