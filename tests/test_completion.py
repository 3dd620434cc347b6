"""Shell completion, generated from the parser by argcomplete: the scripts, and the answers a shell gets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lrrules.cli import main

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("argcomplete")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_for_each_shell(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    import argcomplete

    assert main(["completion", shell]) == 0
    out = capsys.readouterr().out
    assert out.rstrip("\n") == argcomplete.shellcode(["lrrules"], shell=shell).rstrip("\n") and "lrrules" in out


def _complete(tmp_path: Path, line: str) -> list[str]:
    return _completed(tmp_path, line)[0]


def _completed(tmp_path: Path, line: str) -> tuple[list[str], set[str]]:
    """The words the shell gets for ``line``, and the modules the answering interpreter imported."""
    answer = tmp_path / "answer"
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_STDOUT_FILENAME": str(answer), "_ARGCOMPLETE_IFS": "\n", "PYTHONPATH": str(ROOT),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "lrrules"], env=env, cwd=ROOT, timeout=120,
                          check=True, capture_output=True, text=True)
    imported = {row.rsplit("|", 1)[-1].strip() for row in done.stderr.splitlines() if row.startswith("import time:")}
    return sorted(word.strip() for word in answer.read_text().split("\n") if word.strip()), imported


@pytest.mark.slow  # fresh interpreters (timm for model names)
def test_the_shell_gets_subcommands_options_and_timm_names(tmp_path: Path) -> None:
    import timm

    assert _complete(tmp_path, "lrrules res") == ["resolve"]
    assert _complete(tmp_path, "lrrules check --st") == ["--strict"]
    assert "--format" in _complete(tmp_path, "lrrules diff --")
    assert _complete(tmp_path, "lrrules params --model convnext_at") == sorted(timm.list_models("convnext_at*"))
    assert _complete(tmp_path, "lrrules resolve r.yaml --model torchv") == ["torchvision:"]


@pytest.mark.slow  # fresh interpreters
def test_model_names_are_listed_once_per_timm_version_then_timm_is_not_imported(tmp_path: Path) -> None:
    import timm

    first, imported = _completed(tmp_path, "lrrules check r.yaml --model vit_small_patch16_2")
    assert "timm" in imported and first == sorted(timm.list_models("vit_small_patch16_2*"))
    again, imported = _completed(tmp_path, "lrrules check r.yaml --model vit_small_patch16_2")
    assert again == first and not {m for m in imported if m.split(".")[0] in ("timm", "torch", "pydantic")}
    # The list is kept under timm's version: another version's list is never read.
    (listed,) = (tmp_path / "cache" / "lrrules" / "models").glob("timm-*")
    assert timm.__version__ in listed.name
    listed.rename(listed.with_name("timm-0.0.1-models.txt"))
    listed.with_name("timm-0.0.1-models.txt").write_text("vit_small_patch16_2_stale\n")
    assert _complete(tmp_path, "lrrules check r.yaml --model vit_small_patch16_2") == first


@pytest.mark.slow  # fresh interpreters
def test_presets_and_the_rule_files_vars_complete(tmp_path: Path) -> None:
    presets = sorted(f"lrrules:{p.stem}" for p in (ROOT / "lrrules" / "presets").glob("m*.yaml"))
    words, imported = _completed(tmp_path, "lrrules show lrrules:m")
    assert words == presets and len(presets) >= 2 and "torch" not in imported
    assert "examples/" in _complete(tmp_path, "lrrules check exa")  # files still complete
    # The vars of examples/bert-layerwise-decay.yaml, read here from the file as YAML.
    import yaml

    names = yaml.safe_load((ROOT / "examples" / "bert-layerwise-decay.yaml").read_text())["vars"]
    assert _complete(tmp_path, "lrrules show examples/bert-layerwise-decay.yaml --set ") == [f"{n}=" for n in names]
