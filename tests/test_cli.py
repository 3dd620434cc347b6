"""The command line, in-process through main(argv), plus one real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lrrules.cli import main

EXAMPLE = "examples/resnet18-discriminative.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_resolve_prints_the_groups_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "resolve", EXAMPLE, "--model", "resnet18", "--num-classes", "2")
    assert code == 0 and not err
    assert out.splitlines()[2].split() == ["group", "lr", "lr_scale", "weight_decay", "options", "tensors",
                                           "elements", "rules"]
    assert "frozen by 'stem': conv1.weight, bn1.weight, bn1.bias" in out


def test_json_report_parses_and_has_every_part(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "resolve", EXAMPLE, "--model", "resnet18", "--num-classes", "2", "--format", "json")
    report = json.loads(out)
    assert code == 0
    assert {"groups", "params", "unmatched", "conflicts", "frozen", "unused_rules"} <= set(report)
    head = next(p for p in report["params"] if p["name"] == "fc.weight")
    assert head["shape"] == [2, 512] and head["rule"] == "head" and head["lr"] == pytest.approx(0.01)


def test_unmatched_parameters_exit_1_and_are_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: head, match: 'fc.*'}\n")
    code, out, _ = run(capsys, "resolve", str(rules), "--model", "resnet18")
    assert code == 1
    assert "unmatched (error): 60 tensors claimed by no rule" in out and "  conv1.weight" in out


def test_conflicts_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: '*'}\n  - {name: b, match: 'fc.*'}\n")
    code, out, _ = run(capsys, "resolve", str(rules), "--model", "resnet18")
    assert code == 1 and "'fc.weight' is claimed by 2 rules: 'a' and 'b'" in out


def test_invalid_rule_file_exits_2_with_its_place_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: '*', lr_mul: 2}\n")
    code, out, err = run(capsys, "resolve", str(rules), "--model", "resnet18")
    assert code == 2 and not out
    assert err.strip() == f"{rules}:4:27: rules[0].lr_mul: unknown key 'lr_mul' (did you mean 'lr_mult'?)"


def test_unknown_model_exits_2_with_close_names(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "resolve", EXAMPLE, "--model", "resnet-18")
    assert code == 2 and "did you mean" in err and "resnet18" in err and "Traceback" not in err


def test_missing_rule_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "resolve", "nope.yaml", "--model", "resnet18")
    assert code == 2 and err.startswith("nope.yaml: no such file")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["resolve", EXAMPLE])
    assert exit_.value.code == 2 and "--model" in capsys.readouterr().err


def test_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["resolve", "--help"])
    assert "example: lrrules resolve" in capsys.readouterr().out


def test_python_dash_m_runs_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lrrules", "resolve", EXAMPLE, "--model", "resnet18", "--num-classes", "2",
         "--format", "json"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["groups"]) > 1


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("lrrules 0.")
