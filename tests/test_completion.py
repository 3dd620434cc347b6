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
    answer = tmp_path / "answer"
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_STDOUT_FILENAME": str(answer), "_ARGCOMPLETE_IFS": "\n", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "lrrules"], env=env, cwd=ROOT, timeout=120, check=True,
                   capture_output=True)
    return sorted(word.strip() for word in answer.read_text().split("\n") if word.strip())


@pytest.mark.slow  # fresh interpreters (timm for model names)
def test_the_shell_gets_subcommands_options_and_timm_names(tmp_path: Path) -> None:
    import timm

    assert _complete(tmp_path, "lrrules res") == ["resolve"]
    assert _complete(tmp_path, "lrrules check --st") == ["--strict"]
    assert "--format" in _complete(tmp_path, "lrrules diff --")
    assert _complete(tmp_path, "lrrules params --model convnext_at") == sorted(timm.list_models("convnext_at*"))
    assert _complete(tmp_path, "lrrules resolve r.yaml --model torchv") == ["torchvision:"]
