"""lrrules.check: the findings `lrrules check` prints, as data, from a library call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lrrules
from lrrules.check import Finding
from lrrules.cli import main

BAD = "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: '*'}\n  - {name: b, lr_mul: 2, match: x}\n"
PARTIAL = "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: 'layer*'}\n"
# A value SGD refuses for its own settings, on line 3; the column counted by hand below.
SGD_LINE = "defaults: {lr: 0.1, momentum: -1}"
OPTION = f"version: 1\noptimizer: {{type: SGD}}\n{SGD_LINE}\nrules:\n  - {{name: all, match: '*'}}\n"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _files(tmp_path: Path, **texts: str) -> list[str]:
    paths = []
    for name, text in texts.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        paths.append(str(path))
    return paths


def test_the_library_call_gives_the_findings_the_json_output_lists(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad, partial = _files(tmp_path, bad=BAD, partial=PARTIAL)
    code, out, _ = _cli(capsys, "check", bad, partial, "--model", "resnet18", "--format", "json")
    found = lrrules.check(bad, ["resnet18"]) + lrrules.check(partial, ["resnet18"])
    assert json.loads(out) == [f.to_dict() for f in found]
    assert code == max(f.exit_code for f in found) == 2
    assert [(f.level, f.line) for f in found] == [("error", 5), ("problem", 0)]
    assert found[1].model == "resnet18" and "conv1.weight" in found[1].message


@pytest.mark.parametrize("models", [(), ("resnet18",)])
def test_an_optimizer_error_lands_on_its_line_in_every_format(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              models: tuple[str, ...]) -> None:
    (path,) = _files(tmp_path, sgd=OPTION)
    flags = [arg for m in models for arg in ("--model", m)]
    col = SGD_LINE.index("-1") + 1
    if models:  # without a model only the type is checked: the values wait for a model's check
        (finding,) = lrrules.check(path, models)
        assert (finding.path, finding.line, finding.col, finding.level) == (path, 3, col, "error")
        assert "'momentum' of SGD must be >= 0" in finding.message
        code, out, _ = _cli(capsys, "check", path, *flags, "--format", "github")
        assert code == 2 and out.startswith(f"::error file={path.replace(':', '%3A')},line=3,col={col},")
        code, out, _ = _cli(capsys, "check", path, *flags, "--format", "json")
        assert (json.loads(out)[0]["line"], json.loads(out)[0]["col"]) == (3, col)
    else:
        assert lrrules.check(path) == []


@pytest.mark.parametrize("models", [(), ("resnet18",)])
def test_an_unknown_optimizer_type_is_found_at_its_value(tmp_path: Path, models: tuple[str, ...]) -> None:
    (single, named) = _files(tmp_path, single="version: 1\ndefaults: {lr: 0.1}\noptimizer: {type: AdamWW}\n",
                             named="version: 1\ndefaults: {lr: 0.1}\noptimizers:\n  muon: {type: Muonn}\nrules:\n"
                                   "  - {name: all, match: '*', optimizer: muon}\n")
    (finding,) = lrrules.check(single, models)
    assert (finding.line, finding.col) == (3, len("optimizer: {type: ") + 1)
    assert "did you mean 'AdamW'" in finding.message
    (finding,) = lrrules.check(named, models)  # one of several: torch would be asked, the place stays
    assert (finding.line, finding.col) == (4, len("  muon: {type: ") + 1)
    assert "did you mean 'Muon'" in finding.message


def test_a_loaded_rule_set_and_a_module_are_checked_like_specs() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    rules = lrrules.loads("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: lin, match: '0.*'}\n", "r.yaml")
    (finding,) = lrrules.check(rules, [model])
    assert (finding.path, finding.level, finding.model) == ("r.yaml", "problem", "Sequential")
    assert "1.weight" in finding.message and finding.exit_code == 1


def test_overrides_for_a_loaded_rule_set_are_refused_not_dropped() -> None:
    rules = lrrules.loads("version: 1\nvars: {decay: 0.5}\ndefaults: {lr: 0.1}\n")
    with pytest.raises(lrrules.LrrulesError, match="overrides"):
        lrrules.check(rules, overrides={"decay": 0.8})


def test_a_warning_fails_only_under_strict(tmp_path: Path) -> None:
    text = ("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: all, match: '*'}\n"
            "  - {name: nd, match: '*.bias', weight_decay: 0}\n")
    (path,) = _files(tmp_path, decay=text)
    (plain,) = lrrules.check(path)
    (strict,) = lrrules.check(path, strict=True)
    assert (plain.level, plain.line, plain.exit_code) == ("warning", 5, 0)
    assert (strict.level, strict.exit_code) == ("warning", 1)


def test_a_file_that_cannot_be_read_is_one_error_on_the_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.yaml")
    (finding,) = lrrules.check(missing, ["resnet18"])
    assert (finding.path, finding.line, finding.level) == (missing, 0, "error")
    assert "no such file" in finding.message


def test_a_finding_prints_with_its_place_and_model() -> None:
    finding = Finding("r.yaml", 3, 5, "problem", "unmatched", "resnet18")
    assert finding.text() == "r.yaml:3:5: unmatched (on resnet18)"
    assert Finding("r.yaml", 0, 0, "warning", "odd").text() == "r.yaml: warning: odd"


SHARED = ("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: cnn-head, match: 'fc.*', lr_mult: 10}\n"
          "  - {name: vit-head, match: 'head.*', lr_mult: 10}\n  - {name: body, fallback: true}\n")
MODELS = ["resnet18", "vit_tiny_patch16_224"]


def _claimed(glob: str) -> dict[str, int]:
    """Tensors ``glob`` names in each of MODELS, counted from timm's own modules on the meta device."""
    import fnmatch

    timm = pytest.importorskip("timm")
    torch = pytest.importorskip("torch")
    with torch.device("meta"):
        names = {m: [n for n, _ in timm.create_model(m, pretrained=False).named_parameters()] for m in MODELS}
    return {m: len(fnmatch.filter(names[m], glob)) for m in MODELS}


def test_a_rule_of_a_shared_file_unused_on_one_model_does_not_fail(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (path,) = _files(tmp_path, shared=SHARED)
    found = lrrules.check(path, MODELS, strict=True)
    (table,) = found  # one warning, the table of models x rules, and it never fails
    assert (table.level, table.exit_code, table.line) == ("warning", 0, 0)
    assert table.claims is not None and dict(table.claims["cnn-head"]) == _claimed("fc.*")
    assert dict(table.claims["vit-head"]) == _claimed("head.*") and _claimed("head.*")["resnet18"] == 0
    assert "cnn-head" in table.message and "vit_tiny_patch16_224" in table.message
    flags = [arg for m in MODELS for arg in ("--model", m)]
    code, out, _ = _cli(capsys, "check", path, *flags, "--strict", "--format", "json")
    assert code == 0 and json.loads(out) == [f.to_dict() for f in found]
    assert json.loads(out)[0]["claims"]["cnn-head"] == _claimed("fc.*")
    code, _, err = _cli(capsys, "check", path, *flags, "--strict")
    assert code == 0 and "cnn-head" in err and "vit-head" in err


def test_a_rule_unused_on_every_model_is_a_warning_that_fails_under_strict(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (path,) = _files(tmp_path, typo=SHARED + "  - {name: typo, match: 'decoder.*'}\n")
    flags = [arg for m in MODELS for arg in ("--model", m)]
    for strict, code in ((False, 0), (True, 1)):
        unused, table = lrrules.check(path, MODELS, strict=strict)
        assert (unused.level, unused.line, unused.col, unused.exit_code) == ("warning", 7, 5, code)
        assert "'typo' matches no parameter on any of 2 models" in unused.message
        assert table.claims is not None and set(table.claims["typo"].values()) == {0}
        assert _cli(capsys, "check", path, *flags, *["--strict"] * strict)[0] == code
    # One model: a warning at each rule claiming nothing there, failing under strict; no table.
    found = lrrules.check(path, MODELS[:1], strict=True)
    assert [(f.line, f.model, f.exit_code) for f in found] == [(5, "resnet18", 1), (7, "resnet18", 1)]
