"""The shipped .pre-commit-hooks.yaml, run by pre-commit itself on a scratch repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BAD = "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: all, match: '*', lr_mul: 2}\n"
PARTIAL = "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: some, match: 'layer*'}\n"


def _git(cwd: Path, *argv: str) -> str:
    return subprocess.run(["git", *argv], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.slow  # pre-commit, git and a model build in subprocesses
def test_pre_commit_runs_the_shipped_hook(tmp_path: Path) -> None:
    pytest.importorskip("pre_commit")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "PYTHONPATH": str(ROOT)}
    # The hook's own repository: only its manifest matters to pre-commit.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    shutil.copy(ROOT / ".pre-commit-hooks.yaml", hooks)
    _git(hooks, "init", "-q")
    _git(hooks, "add", ".")
    subprocess.run(["git", "commit", "-qm", "hooks"], cwd=hooks, check=True, env=env)
    rev = _git(hooks, "rev-parse", "HEAD")
    # The manifest's `language: system` runs the `lrrules` on PATH: this interpreter's.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "lrrules").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m lrrules "$@"\n')
    (bin_dir / "lrrules").chmod(0o755)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"

    project = tmp_path / "project"
    (project / "configs").mkdir(parents=True)
    (project / "configs" / "good.lrrules.yaml").write_text((ROOT / "examples/resnet18-discriminative.yaml").read_text())
    (project / "configs" / "bad.lrrules.yaml").write_text(BAD)
    (project / "configs" / "partial.lrrules.yaml").write_text(PARTIAL)
    (project / "unrelated.yaml").write_text(BAD)  # not a rule file by the hook's `files:`
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hooks}\n    rev: {rev}\n    hooks:\n"
        f"      - id: lrrules-check\n        args: [--model, resnet18, --num-classes, '2']\n"
        f"      - id: lrrules-check\n        alias: alone\n")  # the file alone: no torch import
    _git(project, "init", "-q")
    _git(project, "add", ".")

    def pre_commit() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pre_commit", "run", "--all-files"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=300)

    result = pre_commit()
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "configs/bad.lrrules.yaml:4:" in out and "lr_mult" in out  # the place and the fix
    assert "configs/partial.lrrules.yaml on resnet18:" in out and "conv1.weight" in out
    assert "unrelated.yaml" not in out and "good.lrrules.yaml" not in out
    # The hook installed nothing: no environment of its own in pre-commit's cache (`language: python`
    # would have made one there and pip-installed torch into it).
    assert (tmp_path / "cache").is_dir() and not list((tmp_path / "cache").glob("*/py_env-*"))

    (project / "configs" / "bad.lrrules.yaml").write_text(BAD.replace("lr_mul", "lr_mult"))
    (project / "configs" / "partial.lrrules.yaml").write_text(PARTIAL.replace("'layer*'", "'*'"))
    result = pre_commit()
    assert result.returncode == 0, result.stdout + result.stderr
