"""The command line as a terminal user sees it: a pseudo-terminal of 80 columns, LC_ALL=C, and piped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARGV = [sys.executable, "-m", "lrrules", "resolve", "examples/resnet18-discriminative.yaml", "--model", "resnet18"]


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
    code, shown = _in_pty(ARGV, env)
    piped = subprocess.run(ARGV, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert code == 0 and piped.returncode == 0
    assert shown.replace("\r\n", "\n") == piped.stdout  # the same report, in a terminal or a pipe
    if locale_name == "C":
        assert piped.stdout.isascii() and "#" in piped.stdout
    else:
        assert "█" in piped.stdout
