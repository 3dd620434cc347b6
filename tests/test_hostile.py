"""Every bad input through the command line: exit code 2, a message with the file and the place,
never a traceback, never a hang, and nothing resolved."""

from __future__ import annotations

import json
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


def test_catastrophic_regex_stops_at_the_time_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "long.safetensors"
    save_file({"a" * 60 + "!": torch.zeros(2)}, checkpoint)
    code, err = resolve(tmp_path, capsys, HEAD + "  - {name: evil, match: {regex: '^(a|aa)+$'}}\n", str(checkpoint))
    assert code == 2 and ":4:" in err and "took longer than" in err and "catastrophically" in err


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
