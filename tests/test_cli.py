"""The command line, in-process through main(argv), plus one real subprocess."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import lrrules

from lrrules.cli import exit_code, main
from lrrules.errors import (
    LrrulesError,
    ModelError,
    OptimizerError,
    PlanProblemsError,
    ResumeError,
    RuleFileError,
    UsageError,
)

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


@pytest.mark.slow  # a real subprocess that imports torch
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


# --- output formats ------------------------------------------------------------------------------

import csv  # noqa: E402
import io  # noqa: E402

import yaml  # noqa: E402


def test_yaml_report_round_trips_to_the_json_one(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["resolve", EXAMPLE, "--model", "resnet18", "--num-classes", "2", "--format"]
    _, as_json, _ = run(capsys, *base, "json")
    _, as_yaml, _ = run(capsys, *base, "yaml")
    assert yaml.safe_load(as_yaml) == json.loads(as_json)


def test_csv_report_has_a_row_per_group_or_per_parameter(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["resolve", EXAMPLE, "--model", "resnet18", "--num-classes", "2", "--format", "csv"]
    _, groups, _ = run(capsys, *base)
    _, params, _ = run(capsys, *base, "--params")
    group_rows = list(csv.DictReader(io.StringIO(groups)))
    param_rows = list(csv.DictReader(io.StringIO(params)))
    assert len(group_rows) == 10 and float(group_rows[-1]["lr"]) == pytest.approx(0.01)
    assert len(param_rows) == 62
    head = next(r for r in param_rows if r["name"] == "fc.bias")
    assert (head["rule"], json.loads(head["modifiers"]), float(head["weight_decay"])) == ("head", ["no-decay"], 0)


def test_per_parameter_table_has_a_bar_scaled_to_the_largest_lr(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "resolve", EXAMPLE, "--model", "resnet18", "--num-classes", "2", "--params")
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("fc.", "layer4.0.conv1"))}
    assert "█" * 12 in rows["fc.weight"]
    assert "█▎" in rows["layer4.0.conv1.weight"] and "██" not in rows["layer4.0.conv1.weight"]  # 1/10 of 12


# --- params --------------------------------------------------------------------------------------


def test_params_lists_every_parameter_with_its_layer(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "params", "--model", "resnet18", "--layers", "module", "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["num_layers"] == 7 and len(report["params"]) == 62
    first = report["params"][0]
    assert first == {"name": "conv1.weight", "shape": [64, 3, 7, 7], "numel": 9408, "module": "Conv2d",
                     "requires_grad": True, "layer": 0, "aliases": []}


@pytest.mark.parametrize(("layers", "count"), [("tensor", 62), ("module:2", 11)])
def test_params_layer_strategies(capsys: pytest.CaptureFixture[str], layers: str, count: int) -> None:
    _, out, _ = run(capsys, "params", "--model", "resnet18", "--layers", layers, "--format", "yaml")
    assert yaml.safe_load(out)["num_layers"] == count


def test_params_timm_layers_are_timms(capsys: pytest.CaptureFixture[str]) -> None:
    import timm
    from timm.models import group_parameters

    model = timm.create_model("resnet18", pretrained=False)
    expected = group_parameters(model, model.group_matcher(coarse=False), reverse=True)
    _, out, _ = run(capsys, "params", "--model", "resnet18", "--layers", "timm", "--format", "json")
    assert {p["name"]: p["layer"] for p in json.loads(out)["params"]} == expected


def test_params_table_and_bad_layers(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "params", "--model", "resnet18")
    assert code == 0 and out.splitlines()[1].split()[:4] == ["conv1.weight", "64x3x7x7", "9,408", "Conv2d"]
    code, _, err = run(capsys, "params", "--model", "resnet18", "--layers", "bricks")
    assert code == 2 and "--layers takes tensor, module, module:N, timm or blocks" in err


# --- check ---------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_check_is_silent_and_exits_0_when_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", EXAMPLE, "--model", "resnet18", "--model", "resnet34", "--strict")
    assert (code, out, err) == (0, "", "")


def test_check_lists_problems_per_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = write(tmp_path, "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: 'layer[123].*'}\n"
                            "  - {name: rest, match: ['conv1.*', 'bn1.*', 'fc.*', 'layer4.*']}\n")
    code, out, _ = run(capsys, "check", rules, "--model", "resnet18", "--model", "torchvision:resnet18")
    assert code == 0 and out == ""
    code, out, _ = run(capsys, "check", rules, "--model", "convnext_atto")
    assert code == 1 and "on convnext_atto:" in out and "claimed by no rule" in out


def test_check_strict_fails_on_unused_rules_and_zero_lr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = write(tmp_path, "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: all, match: '*'}\n"
                            "  - {name: typo, match: 'decoder.*'}\nmodifiers:\n  - {name: z, match: 'fc.*', lr: 0}\n")
    code, _, err = run(capsys, "check", rules, "--model", "resnet18")
    assert code == 0 and f"{rules}:5:5: warning: rule 'typo' matches no parameter (on resnet18)" in err
    code, out, err = run(capsys, "check", rules, "--model", "resnet18", "--strict")
    assert code == 1 and "rule 'typo' matches no parameter" in err and "lr = 0" in out


def test_check_without_a_model_validates_the_file_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "check", EXAMPLE) == (0, "", "")
    bad = write(tmp_path, "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: {regex: '('}}\n")
    code, _, err = run(capsys, "check", bad)
    assert code == 2 and ":4:" in err and "invalid regex" in err


def test_check_catches_an_optimizer_typo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = write(tmp_path, "version: 1\ndefaults: {lr: 0.1}\noptimizer: {type: AdamWW}\nrules:\n"
                            "  - {name: all, match: '*'}\n")
    code, _, err = run(capsys, "check", rules, "--model", "resnet18")
    assert code == 2 and "did you mean 'AdamW'" in err


@pytest.mark.slow  # fresh interpreters
@pytest.mark.parametrize("argv", [["schema"], ["check", EXAMPLE]])
def test_commands_without_a_model_never_import_torch(argv: list[str]) -> None:
    code = (
        "import sys\nfrom lrrules.cli import main\n"
        f"assert main({argv!r}) == 0\n"
        "heavy = [m for m in ('torch', 'timm', 'torchvision') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# --- explain -------------------------------------------------------------------------------------


def test_explain_shows_rules_captures_and_formulas_filled_in(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", EXAMPLE, "layer2.0.bn1.*", "--model", "resnet18")
    assert code == 0
    block = out.split("\n\n")[0]
    assert block.splitlines()[0] == "layer2.0.bn1.weight  [128, BatchNorm2d]"
    assert "rule: stages" in block and "modifiers: no-decay" in block and "captured: stage=2" in block
    assert "stages: lr_mult = 0.5 ** (4 - stage) with stage=2 -> 0.25" in block
    assert "no-decay: weight_decay = 0" in block
    assert "=> lr 0.00025 (x0.25 base), weight_decay 0" in block
    assert out.count("\n\n") == 1, "both layer2.0.bn1 tensors, nothing else"


def test_explain_json_and_no_match(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", EXAMPLE, "fc.weight", "--model", "resnet18", "--format", "json")
    (entry,) = json.loads(out)
    assert code == 0 and entry["rule"] == "head" and entry["steps"][0]["setting"] == "lr_mult"
    code, _, err = run(capsys, "explain", EXAMPLE, "decoder.*", "--model", "resnet18")
    assert code == 2 and "no parameter of resnet18 matches 'decoder.*'" in err


def test_explain_names_both_rules_of_a_conflict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = write(tmp_path, "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: '*'}\n"
                            "  - {name: b, match: 'fc.*'}\n")
    _, out, _ = run(capsys, "explain", rules, "fc.bias", "--model", "resnet18")
    assert "CONFLICT: 'fc.bias' is claimed by 2 rules: 'a' and 'b'" in out


# --- diff ----------------------------------------------------------------------------------------


def test_diff_lists_changed_settings_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path, "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: all, match: '*'}\n", "old.yaml")
    new = write(tmp_path, "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: all, match: '*'}\n"
                          "modifiers:\n  - {name: h, match: 'fc.*', lr_mult: 10}\n", "new.yaml")
    code, out, _ = run(capsys, "diff", old, new, "--model", "resnet18", "--format", "json")
    changes = json.loads(out)
    assert code == 1
    assert [(c["param"], c["setting"]) for c in changes] == [("fc.weight", "lr"), ("fc.bias", "lr")]
    assert changes[0]["old"] == pytest.approx(0.1) and changes[0]["new"] == pytest.approx(1.0)
    assert run(capsys, "diff", old, old, "--model", "resnet18")[0] == 0


def test_diff_reads_a_git_revision(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: all, match: '*'}\n")
    git("add", "rules.yaml")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    rules.write_text("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: all, match: '*', freeze: true}\n")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "diff", "HEAD:rules.yaml", "rules.yaml", "--model", "resnet18")
    assert code == 1 and "62 parameters differ" in out and "trainable" in out and "frozen" in out
    code, _, err = run(capsys, "diff", "HEAD:nope.yaml", "rules.yaml", "--model", "resnet18")
    assert code == 2 and "HEAD:nope.yaml: not found in git" in err


# --- init, schema, plot --------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["resnet18", "vit_tiny_patch16_224", "convnext_atto", "efficientnet_b0",
                                   "swin_tiny_patch4_window7_224"])
def test_init_writes_a_file_that_checks_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str) -> None:
    out = tmp_path / "rules.yaml"
    code, _, err = run(capsys, "init", "--model", model, "--layer-decay", "0.75", "--no-decay-norm-bias", "-o",
                       str(out))
    assert code == 0 and "wrote" in err
    text = out.read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    assert run(capsys, "check", str(out), "--model", model, "--strict") == (0, "", "")
    _, report, _ = run(capsys, "resolve", str(out), "--model", model, "--format", "json")
    lrs = sorted({g["lr"] for g in json.loads(report)["groups"]})
    assert lrs[-1] == pytest.approx(1e-2) and len(lrs) > 2, "a fast head and decaying layers"


def test_init_plain_and_refusing_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "init", "--model", "resnet18")
    assert code == 0 and 'match: "fc.*"' in out and "fallback: true" in out
    existing = write(tmp_path, "keep me")
    code, _, err = run(capsys, "init", "--model", "resnet18", "-o", existing)
    assert code == 2 and "exists; pass --force" in err and Path(existing).read_text() == "keep me"


def test_schema_command_prints_the_schema_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schema")
    assert code == 0 and out == Path("schemas/lrrules.schema.json").read_text()


def test_plot_writes_an_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("lr.png", "lr.svg"):
        code, _, _ = run(capsys, "plot", EXAMPLE, "--model", "resnet18", "-o", str(tmp_path / name))
        assert code == 0
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "lr.svg").read_bytes()[:500]
    code, _, err = run(capsys, "plot", EXAMPLE, "--model", "resnet18", "-o", str(tmp_path / "lr.bmp"))
    assert code == 2 and ".png, .svg, .pdf" in err


def test_plot_without_matplotlib_says_how_to_get_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run(capsys, "plot", EXAMPLE, "--model", "resnet18", "-o", str(tmp_path / "lr.png"))
    assert code == 2 and "pip install 'lrrules[plot]'" in err


@pytest.mark.parametrize("command", ["resolve", "params", "check", "explain", "diff", "init", "schema", "plot"])
def test_every_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and f"example:\n  lrrules {command}" in capsys.readouterr().out


@pytest.mark.parametrize(("error", "code"), [
    (PlanProblemsError("2 problems"), 1),
    (RuleFileError([]), 2),
    (ModelError("no such model"), 2),
    (OptimizerError("no such optimizer"), 2),
    (ResumeError("another layout"), 2),
    (UsageError("--set takes name=number"), 2),
])
def test_each_error_maps_to_its_exit_code_in_one_place(error: LrrulesError, code: int) -> None:
    assert exit_code(error) == code


# --- red-team leftovers: usage errors, never a traceback or a hang ---------------------------------


@pytest.mark.parametrize("level", ["9" * 5000, "1" + "0" * 4300, "٣", "0", "-1", "1.5", "x"])
def test_layers_level_out_of_range_is_a_usage_error(capsys: pytest.CaptureFixture[str], level: str) -> None:
    code, _, err = run(capsys, "params", "--model", "resnet18", "--layers", f"module:{level}")
    assert code == 2 and "--layers takes" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["init", "--model", "resnet18", "--force"], ["schema"]])
def test_output_to_a_fifo_is_refused_without_blocking(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      argv: list[str]) -> None:
    import os

    fifo = tmp_path / "p.yaml"
    os.mkfifo(fifo)
    code, _, err = run(capsys, *argv, "-o", str(fifo))  # would block forever if it opened the pipe
    assert code == 2 and str(fifo) in err and "named pipe" in err


@pytest.mark.parametrize("argv", [["init", "--model", "resnet18", "--force"], ["schema"]])
def test_output_to_a_directory_or_device_names_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        argv: list[str]) -> None:
    code, _, err = run(capsys, *argv, "-o", str(tmp_path))
    assert code == 2 and f"{tmp_path} is a directory" in err
    if Path("/dev/full").exists():
        code, _, err = run(capsys, *argv, "-o", "/dev/full")
        assert code == 2 and "/dev/full" in err


def test_a_failed_write_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    import errno

    out = tmp_path / "rules.yaml"
    real_open = builtins.open

    class Full:
        def __init__(self, *a: object, **k: object) -> None:
            self.inner = real_open(*a, **k)  # type: ignore[call-overload]

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.inner.close()

        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    def fake_open(file: object, *a: object, **k: object) -> object:
        return Full(file, *a, **k) if str(file) == str(out) else real_open(file, *a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", fake_open)
    code, _, err = run(capsys, "init", "--model", "resnet18", "-o", str(out))
    assert code == 2 and str(out) in err and "No space left on device" in err


@pytest.mark.parametrize("spec", ["os:system", "subprocess:run", "builtins:print", "os.path:join", "sys:exit",
                                  "shutil:rmtree", "importlib:import_module", "posix:system"])
def test_standard_library_is_refused_as_a_factory(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  spec: str) -> None:
    marker = tmp_path / "ran"
    code, _, err = run(capsys, "params", "--model", spec, "--model-arg", f"command=touch {marker}")
    assert code == 2 and "standard library" in err and not marker.exists()


# --- check: several files, annotations for CI, standard input -------------------------------------


def _gh(line: str) -> tuple[dict[str, str], str]:
    """A GitHub Actions workflow command parsed back, unescaping as the runner does."""
    def unescape(text: str) -> str:
        return text.replace("%0A", "\n").replace("%0D", "\r").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")

    assert line.startswith("::error ")
    head, _, message = line[len("::error "):].partition("::")
    props = dict(p.split("=", 1) for p in head.split(","))
    return {k: unescape(v) for k, v in props.items()}, unescape(message)


BAD_LINES = ["version: 1", "defaults: {lr: 0.1}", "rules:", "  - {name: a, match: '*'}", "  - {name: b, lr_mul: 2, match: x}"]


def test_check_reports_every_file_as_github_annotations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "dir,with%odd:name" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text("\n".join(BAD_LINES) + "\n")
    missing = tmp_path / "missing.yaml"
    code, out, err = run(capsys, "check", str(bad), EXAMPLE, str(missing), "--format", "github")
    assert code == 2 and not err
    found = [_gh(line) for line in out.splitlines()]
    assert [p["file"] for p, _ in found] == [str(bad), str(missing)]  # the clean file has none
    props, message = found[0]
    # By hand: 'lr_mul' is on line 5, at the column where the key starts.
    assert (props["line"], props["col"]) == ("5", str(BAD_LINES[4].index("lr_mul") + 1))
    assert "lr_mul" in message and "lr_mult" in message
    assert "line" not in found[1][0] and "no such file" in found[1][1]


def test_check_json_lists_file_errors_and_model_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "\n".join(BAD_LINES) + "\n", "bad.yaml")
    partial = write(tmp_path, "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: 'layer*'}\n", "partial.yaml")
    code, out, _ = run(capsys, "check", bad, partial, EXAMPLE, "--model", "resnet18", "--format", "json")
    assert code == 2  # the worst of the files: one is invalid
    found = json.loads(out)
    assert {(f["file"], f["severity"]) for f in found} == {(bad, "error"), (partial, "problem")}
    problem = next(f for f in found if f["severity"] == "problem")
    assert problem["model"] == "resnet18" and "conv1.weight" in problem["message"] and problem["line"] is None
    code, out, _ = run(capsys, "check", partial, EXAMPLE, "--model", "resnet18", "--format", "json")
    assert code == 1 and len(json.loads(out)) == 1
    assert run(capsys, "check", EXAMPLE, EXAMPLE, "--format", "json") == (0, "[]\n", "")


def test_check_text_reports_each_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "\n".join(BAD_LINES) + "\n", "bad.yaml")
    partial = write(tmp_path, "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: 'layer*'}\n", "partial.yaml")
    code, out, err = run(capsys, "check", bad, partial, "--model", "resnet18")
    assert code == 2 and f"{bad}:5:" in err and f"{partial} on resnet18:" in out


@pytest.mark.parametrize("command", [["check", "-"], ["resolve", "-", "--model", "resnet18", "--format", "json"],
                                     ["show", "-"]])
def test_dash_reads_the_rule_file_from_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                             command: list[str]) -> None:
    import io

    text = Path(EXAMPLE).read_text()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    from_stdin = run(capsys, *command)
    from_file = run(capsys, *[EXAMPLE if a == "-" else a for a in command])
    assert from_stdin == (from_file[0], from_file[1].replace(f'"source": "{EXAMPLE}"', '"source": "<stdin>"'),
                          from_file[2])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("\n".join(BAD_LINES).encode())))
    code, _, err = run(capsys, *command)
    assert code == 2 and "<stdin>:5:" in err


# --- phases in every format ------------------------------------------------------------------------


UNFREEZING = "examples/resnet18-gradual-unfreezing.yaml"


@pytest.mark.parametrize("epoch", [0, 1, 2, 3])
def test_phase_frozen_rows_agree_in_table_csv_and_json(capsys: pytest.CaptureFixture[str], epoch: int) -> None:
    import csv
    import io

    import timm

    names = [n for n, _ in timm.create_model("resnet18", pretrained=False).named_parameters()]
    # By hand from the file's phases: epoch 0 trains the head, each later epoch one stage more.
    training = ["fc."] + ["layer4.", "layer3."][:epoch] + ([""] if epoch >= 3 else [])
    expected = {n: any(n.startswith(p) for p in training) for n in names}
    base = ("resolve", UNFREEZING, "--model", "resnet18", "--params", "--epoch", str(epoch))
    _, out, _ = run(capsys, *base, "--format", "json")
    assert {a["name"]: a["trains"] for a in json.loads(out)["params"]} == expected
    _, out, _ = run(capsys, *base, "--format", "csv")
    assert {r["name"]: r["trains"] == "True" for r in csv.DictReader(io.StringIO(out))} == expected
    _, out, _ = run(capsys, *base)
    lines = out.splitlines()
    frozen = [n for n in names if not expected[n]]
    if frozen:
        column = lines[2].index("trains")
        rows = {line.split()[0]: line[column:].split()[0] == "yes" for line in lines[3:3 + len(names)]}
        assert rows == expected
        assert f"frozen by phases at epoch {epoch}: {len(frozen)} tensors" in out
        listed = next(line for line in lines if line.startswith("  ") and frozen[0] in line).strip()
        assert listed.split(", ")[:20] == frozen[:20]  # the model's order
        assert f"({len(names) - len(frozen)} of the tensors training at epoch {epoch})" in out
    else:
        assert "trains" not in lines[2] and "frozen by phases" not in out


@pytest.mark.parametrize("option", ["--epoch", "--step"])
@pytest.mark.parametrize("command", ["resolve", "explain"])
def test_epoch_on_a_file_without_phases_says_so(capsys: pytest.CaptureFixture[str], option: str, command: str) -> None:
    extra = ["fc.*"] if command == "explain" else []
    code, out, err = run(capsys, command, EXAMPLE, *extra, "--model", "resnet18", option, "1")
    assert code == 2 and not out and "has no phases" in err and option in err


@pytest.mark.parametrize("where", ["here", "sub", "sub/deeper", "repo"])
def test_init_writes_a_schema_reference_that_resolves(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    root = Path.cwd()
    if where != "repo":  # a project without lrrules' schemas/ folder
        monkeypatch.chdir(tmp_path)
    out = tmp_path / ("rules.yaml" if where in ("here", "repo") else f"{where}/rules.yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    code, _, err = run(capsys, "init", "--model", "resnet18", "-o", str(out))
    assert code == 0 and "yaml-language-server" in err
    first = out.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    target = out.parent / first.split("$schema=", 1)[1]
    assert target.is_file(), target
    assert target.read_text() == (root / "schemas/lrrules.schema.json").read_text()


# --- bars: a log scale for decays over orders of magnitude, ASCII outside UTF-8 --------------------

STEEP = ("version: 1\ndefaults: {lr: 0.001}\nrules:\n  - {name: stem, match: ['conv1.*', 'bn1.*'], lr_mult: 0.00001}\n"
         "  - {name: stages, match: {regex: '^layer(?P<stage>\\d)\\.'}, lr_mult: '0.1 ** (4 - stage)'}\n"
         "  - {name: head, match: 'fc.*', lr_mult: 10}\n")


def _eighths(bar: str) -> int:
    return 8 * bar.count("█") + max((" ▏▎▍▌▋▊▉".index(c) for c in bar if c in "▏▎▍▌▋▊▉"), default=0)


def test_bars_use_a_log_scale_when_lrs_span_orders_of_magnitude(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    rules = write(tmp_path, STEEP)
    _, out, _ = run(capsys, "resolve", rules, "--model", "resnet18", "--format", "json")
    lrs = [g["lr"] for g in json.loads(out)["groups"]]
    _, out, _ = run(capsys, "resolve", rules, "--model", "resnet18")
    lines = out.splitlines()
    assert "(log)" in lines[2]
    start = lines[2].index("(log)")
    bars = [_eighths(line[start:start + 13]) for line in lines[3:3 + len(lrs)]]
    order = sorted(range(len(lrs)), key=lambda i: lrs[i])
    # lrs 1e-8 (stem), 1e-6 ... 1e-3 (stages), 1e-2 (head): the smallest visible, the largest full (12
    # characters of 8 eighths), and each step as long as the decades it spans, within rounding.
    assert [bars[i] for i in order] == sorted(bars) and bars[order[0]] >= 1 and bars[order[-1]] == 96
    decades = math.log10(lrs[order[-1]] / lrs[order[0]])
    for a, b in zip(order, order[1:]):
        assert abs(bars[b] - bars[a] - 95 * math.log10(lrs[b] / lrs[a]) / decades) <= 1
    _, out, _ = run(capsys, "resolve", EXAMPLE, "--model", "resnet18")  # 80x from least to most: linear
    assert "(log)" not in out


@pytest.mark.parametrize("locale_name", ["C", "POSIX", "en_US.ISO-8859-1"])
def test_bars_are_ascii_outside_a_utf8_locale(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch, locale_name: str) -> None:
    monkeypatch.setenv("LC_ALL", locale_name)
    for argv in (["resolve", write(tmp_path, STEEP), "--model", "resnet18"], ["resolve", EXAMPLE, "--model", "resnet18",
                                                                              "--params"]):
        _, out, _ = run(capsys, *argv)
        assert out.isascii() and "#" in out
    monkeypatch.setenv("LC_ALL", "en_US.UTF-8")
    _, out, _ = run(capsys, "resolve", EXAMPLE, "--model", "resnet18")
    assert "█" in out


# --- diff: the optimizer's own settings, and a summary by rule --------------------------------------


def test_diff_reports_optimizer_type_and_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = "version: 1\ndefaults: {lr: 0.1%s}\n%srules:\n  - {name: all, match: '*'}\n"
    old = write(tmp_path, base % ("", "optimizer: {type: AdamW}\n"), "old.yaml")
    new = write(tmp_path, base % (", eps: 1.0e-6", "optimizer: {type: Adam}\n"), "new.yaml")
    code, out, _ = run(capsys, "diff", old, new, "--model", "resnet18", "--format", "json")
    assert code == 1
    found = {(c["param"], c["setting"]): (c["old"], c["new"]) for c in json.loads(out)}
    assert found == {("(optimizer)", "type"): ("AdamW", "Adam"), ("(defaults)", "eps"): (None, 1e-6)} | {
        (n, "options.eps"): (None, 1e-6) for n, _ in _resnet18_names()}
    code, out, _ = run(capsys, "diff", old, old.replace("old", "old"), "--model", "resnet18")
    assert code == 0


def _resnet18_names() -> list[tuple[str, object]]:
    import timm

    return list(timm.create_model("resnet18", pretrained=False).named_parameters())


@pytest.mark.parametrize("pair", [("resnet18-discriminative.yaml", "resnet18-layerwise-per-module.yaml"),
                                  ("resnet18-discriminative.yaml", "resnet18-gradual-unfreezing.yaml"),
                                  ("resnet18-frozen-backbone.yaml", "resnet18-layerwise-per-tensor.yaml")])
def test_diff_summary_groups_the_per_parameter_diff_by_rule(capsys: pytest.CaptureFixture[str],
                                                            pair: tuple[str, str]) -> None:
    old, new = (f"examples/{name}" for name in pair)
    _, out, _ = run(capsys, "diff", old, new, "--model", "resnet18", "--format", "json")
    per_param = json.loads(out)
    _, out, _ = run(capsys, "resolve", new, "--model", "resnet18", "--format", "json")
    rule_of = {a["name"]: a["rule"] or a["status"] for a in json.loads(out)["params"]}
    expected: dict[tuple[str, str], list[str]] = {}
    for c in per_param:  # a hand-written grouping of the per-parameter diff
        if not c["param"].startswith("("):
            expected.setdefault((rule_of[c["param"]], c["setting"]), []).append(c["param"])
    code, out, _ = run(capsys, "diff", old, new, "--model", "resnet18", "--summary", "--format", "json")
    rows = json.loads(out)
    assert code == 1
    assert {(r["rule"], r["setting"]): r["params"] for r in rows if r["count"]} == expected
    assert all(r["count"] == len(r["params"]) for r in rows)
    _, table, _ = run(capsys, "diff", old, new, "--model", "resnet18", "--summary")
    assert len(table.splitlines()) == len(rows) + 2  # a header, a row per rule and setting, the total


# --- tables within a width -------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 100, 132])
@pytest.mark.parametrize("rules", [EXAMPLE, UNFREEZING, "examples/vit-timm-layer-decay.yaml"])
def test_tables_fit_a_width_and_shorten_cells_visibly(width: int, rules: str) -> None:
    from lrrules import load
    from lrrules.report import plan_table
    from lrrules.sources import open_model

    model = "vit_tiny_patch16_224" if "vit" in rules else "resnet18"
    plan = lrrules.resolve(load(rules), open_model(model).module)
    if rules == UNFREEZING:
        plan = plan.at(epoch=1)
    for per_param in (False, True):
        full = plan_table(plan, "t", per_param).splitlines()
        fitted = plan_table(plan, "t", per_param, width=width).splitlines()
        header = next(i for i, line in enumerate(full) if line.startswith(("group", "name")))
        rows = [line.split("  ")[0] for line in full[header:header + len(plan.params if per_param else plan.groups) + 1]]
        fitted_rows = [line.split("  ")[0] for line in fitted[header:header + len(rows)]]
        for cell, cut in zip(rows, fitted_rows):  # the first column: whole, or its start and an ellipsis
            assert cut == cell or cut.endswith("…") and cell.startswith(cut[:-1])
        # Only text columns are shortened, never below their header or 10 characters, and numbers and
        # bars never: where those alone are wider than the width (80 columns) the table stays wider.
        widest, fitted_widest = max(map(len, full[header:])), max(map(len, fitted[header:]))
        assert fitted_widest <= widest and (fitted_widest < widest or widest <= width)
        if width >= 132:
            assert fitted_widest <= width
        # The wrapped summary holds the same words (names), in the same order, each line within width.
        summary_start = header + len(rows)
        assert " ".join(fitted[summary_start:]).split() == " ".join(full[summary_start:]).split()
        assert all(len(line) <= width for line in fitted[summary_start:] if " " in line.strip())


# --- plot: axes that say something ------------------------------------------------------------------


def test_plot_labels_layers_or_names_and_constant_panels() -> None:
    pytest.importorskip("matplotlib")
    from lrrules import load
    from lrrules.plot import figure
    from lrrules.sources import open_model

    model = open_model("resnet18").module
    plan = lrrules.resolve(load(EXAMPLE), model)
    lr_axis, wd_axis = figure(plan).axes
    # By hand: the example's layers are conv1/bn1, then layer1..layer4, then fc: 7 layers, labelled 0..6.
    labels = [t.get_text() for t in wd_axis.get_xticklabels()]
    assert labels == [str(i) for i in range(7)] and "layer" in wd_axis.get_xlabel()
    firsts = {}
    for a in plan.params:
        firsts.setdefault(a.layer, a.index)
    assert list(wd_axis.get_xticks()) == [firsts[i] for i in range(7)]

    from lrrules import loads

    flat = lrrules.resolve(loads("version: 1\ndefaults: {lr: 0.1, weight_decay: 0.01}\nrules:\n"
                                     "  - {name: all, match: '*'}\n"), model)
    lr_axis, wd_axis = figure(flat).axes
    assert list(lr_axis.get_yticks()) == [0.1] and list(wd_axis.get_yticks()) == [0.01]  # constant panels


def test_plot_at_an_epoch_draws_the_phase_frozen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    from lrrules import load
    from lrrules.plot import figure
    from lrrules.sources import open_model

    plan = lrrules.resolve(load(UNFREEZING), open_model("resnet18").module)
    for epoch in (0, 1, 3):
        at = plan.at(epoch=epoch)
        lr_axis, _ = figure(at).axes
        grey = [line for line in lr_axis.get_lines() if line.get_color() == "0.85"]
        assert len(grey) == sum(1 for a in at.params if a.status == "frozen" or not a.trains)
    code, _, err = run(capsys, "plot", UNFREEZING, "--model", "resnet18", "--epoch", "1", "-o", str(tmp_path / "p.png"))
    assert code == 0 and (tmp_path / "p.png").stat().st_size > 0
    code, _, err = run(capsys, "plot", EXAMPLE, "--model", "resnet18", "--epoch", "1", "-o", str(tmp_path / "q.png"))
    assert code == 2 and "has no phases" in err


def _names_checkpoint(path: Path, names: list[str]) -> Path:
    import struct

    header, offset = {}, 0
    for name in names:
        header[name] = {"dtype": "F32", "shape": [4, 4], "data_offsets": [offset, offset + 64]}
        offset += 64
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return path


def _ascii_stdout(monkeypatch: pytest.MonkeyPatch) -> io.TextIOWrapper:
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")  # PYTHONIOENCODING=ascii, a latin-1 terminal ...
    monkeypatch.setattr(sys, "stdout", out)
    return out


def _written(out: io.TextIOWrapper) -> str:
    out.flush()
    return out.buffer.getvalue().decode("ascii")  # type: ignore[attr-defined]


def test_an_output_that_cannot_encode_a_name_gets_it_escaped_not_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = _names_checkpoint(tmp_path / "m.safetensors", ["日本.weight", "fc.bias"])
    out = _ascii_stdout(monkeypatch)
    assert main(["params", "--model", str(ckpt)]) == 0
    text = _written(out)
    assert "\\u65e5\\u672c.weight" in text and "fc.bias" in text


def test_a_narrow_diff_on_an_output_without_the_ellipsis_marks_cuts_with_a_tilde(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lrrules.cli as cli

    ckpt = _names_checkpoint(tmp_path / "m.safetensors", ["a_rather_long_parameter_name.weight"])
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: all, match: '*', lr_mult: 1}\n")
    new.write_text("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: all, match: '*', lr_mult: 2}\n")
    monkeypatch.setattr(cli, "_width", lambda args: 40)  # a 40-column terminal
    out = _ascii_stdout(monkeypatch)
    assert main(["diff", str(old), str(new), "--model", str(ckpt)]) == 1
    text = _written(out)
    # 40 columns less setting (7), old and new (3 each) and three gaps of 2: 21 for the name.
    assert "a_rather_long_parame~  lr" in text and "0.1" in text and "0.2" in text


@pytest.mark.parametrize("head", ["emoji😀", "𝐡𝐞𝐚𝐝", "a\u2028b"])
def test_init_writes_a_rule_file_that_loads_for_a_head_named_beyond_the_basic_plane(
        head: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The head's glob was quoted as JSON, whose \ud83d\ude00 escapes YAML refuses: init failed with
    # "invalid YAML" on its own output.
    import yaml

    ckpt = _names_checkpoint(tmp_path / "m.safetensors", ["body.weight", f"{head}.weight", f"{head}.bias"])
    assert main(["init", "--model", str(ckpt)]) == 0
    text = capsys.readouterr().out
    rules = lrrules.loads(text, "init.yaml")
    assert [r.match for r in rules.rules if r.name == "head"] == [f"{head}.*"]
    assert yaml.safe_load(text)["rules"][0]["match"] == f"{head}.*"


def test_every_file_a_help_example_reads_is_in_the_repository(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parent.parent
    commands = ["resolve", "params", "check", "explain", "diff", "init", "schema", "plot", "completion", "show"]
    named = []
    for command in commands:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        example = capsys.readouterr().out.split("example:\n", 1)[1].splitlines()[0].split("#")[0].split()
        assert f"lrrules {command}" in " ".join(example).replace('"$(', "")
        # What the example reads (not what -o writes): a rule file, a config, a checkpoint.
        for before, word in zip(example, example[1:]):
            if before not in ("-o", "--output") and word.endswith((".yaml", ".yml", ".json")):
                named.append(word.rpartition(":")[2] if ":" in word and "/" not in word.split(":")[0] else word)
    assert len(named) >= 6 and [n for n in named if not (root / n).is_file()] == []


def test_an_explicit_columns_fits_the_table_on_a_pipe_too(capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    code, full, _ = run(capsys, "resolve", EXAMPLE, "--model", "resnet18", "--params")
    assert code == 0 and max(map(len, full.splitlines())) > 80  # a pipe: every character
    monkeypatch.setenv("COLUMNS", "80")
    code, fitted, _ = run(capsys, "resolve", EXAMPLE, "--model", "resnet18", "--params")
    assert code == 0 and max(map(len, fitted.splitlines())) <= 80
    assert run(capsys, "resolve", EXAMPLE, "--model", "resnet18", "--params", "--wide")[1] == full
