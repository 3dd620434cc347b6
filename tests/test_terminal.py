"""The command line as a terminal user sees it: a pseudo-terminal of 80 columns, LC_ALL=C, and piped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARGV = [sys.executable, "-m", "lrrules", "resolve", "examples/resnet18-discriminative.yaml", "--model", "resnet18",
        "--quiet"]  # a slow build on a busy machine would put its status line into the terminal output


def _in_pty(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    import pty
    import struct
    import termios
    import fcntl

    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(argv, stdin=child_fd, stdout=child_fd, stderr=child_fd, env=env, cwd=ROOT)
    os.close(child_fd)
    chunks = []
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main_fd)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow  # fresh interpreters that import torch
@pytest.mark.parametrize("locale_name", ["C", "C.UTF-8"])
def test_resolve_in_a_terminal_and_piped(locale_name: str) -> None:
    env = {**os.environ, "LC_ALL": locale_name, "PYTHONPATH": str(ROOT)}
    env.pop("COLUMNS", None)
    code, shown = _in_pty([*ARGV, "--wide"], env)  # --wide: the terminal's width aside, nothing differs
    piped = subprocess.run(ARGV, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert code == 0 and piped.returncode == 0
    assert shown.replace("\r\n", "\n") == piped.stdout  # the same report, in a terminal or a pipe
    if locale_name == "C":
        assert piped.stdout.isascii() and "#" in piped.stdout
    else:
        assert "█" in piped.stdout


@pytest.mark.slow  # fresh interpreters that import torch
def test_tables_fit_an_80_column_terminal_and_wide_or_piped_keep_everything() -> None:
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONPATH": str(ROOT)}
    env.pop("COLUMNS", None)
    argv = [*ARGV, "--params"]
    code, shown = _in_pty(argv, env)
    lines = shown.replace("\r\n", "\n").splitlines()
    piped = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120).stdout
    # Fitted: every line within 80 columns, and each lr and weight decay whole in its row.
    assert code == 0 and max(map(len, lines)) <= 80 < max(map(len, piped.splitlines()))
    assert "\x1b[" not in shown  # no colour or cursor codes: NO_COLOR holds by construction
    rows = next(i for i, line in enumerate(piped.splitlines()) if " groups, " in line)  # down to the totals
    for row, full in zip(lines[3:rows], piped.splitlines()[3:rows]):
        assert full.split()[6] in row.split()  # the lr (or `frozen`), whole
    _, wide = _in_pty([*argv, "--wide"], env)
    assert wide.replace("\r\n", "\n") == piped and max(map(len, piped.splitlines())) > 80
    # The group table too, without --params.
    _, groups = _in_pty(ARGV, env)
    assert max(map(len, groups.replace("\r\n", "\n").splitlines())) <= 80
    # Help is wrapped to the terminal; only the example stays on one line, to be copied.
    _, help_text = _in_pty([sys.executable, "-m", "lrrules", "check", "--help"], env)
    lines = help_text.replace("\r\n", "\n").splitlines()
    example = lines.index("example:")
    assert all(len(line) <= 80 for i, line in enumerate(lines) if i != example + 1)
