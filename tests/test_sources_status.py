"""The status line while a model builds: on a terminal's stderr once a build runs past a second,
cleared when it ends; never on a pipe, under ``quiet``, or for a quick build. Times are never
asserted: the slow factory waits until the line is written (or, where none is due, past the delay)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

import lrrules.sources
from lrrules.sources import cached_open_model, open_model

FACTORY = """\
import sys, time
import torch

def make(wait_for_status=True):
    # Slow until the status line is on stderr (at most 20 s), or 0.3 s where none is expected.
    for _ in range(200 if wait_for_status else 3):
        if wait_for_status and sys.stderr.getvalue():
            break
        time.sleep(0.1)
    return torch.nn.Linear(2, 3)
"""


class FakeStderr(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.fixture
def slow_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "slow_models.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(lrrules.sources, "STATUS_AFTER", 0.05)
    return "slow_models:make"


def test_a_slow_build_shows_what_it_builds_on_a_terminal_then_clears_it(
        slow_factory: str, monkeypatch: pytest.MonkeyPatch) -> None:
    err = FakeStderr(terminal=True)
    monkeypatch.setattr(sys, "stderr", err)
    model = open_model(slow_factory)
    assert [p.name for p in model.params] == ["weight", "bias"]
    line = "building slow_models:make (factory) ..."
    assert err.getvalue() == line + "\r" + " " * len(line) + "\r"


@pytest.mark.parametrize(("terminal", "quiet"), [(False, False), (True, True)], ids=["pipe", "quiet"])
def test_no_status_line_on_a_pipe_or_when_quiet(
        terminal: bool, quiet: bool, slow_factory: str, monkeypatch: pytest.MonkeyPatch) -> None:
    err = FakeStderr(terminal)
    monkeypatch.setattr(sys, "stderr", err)
    cached_open_model(slow_factory, model_args={"wait_for_status": False}, quiet=quiet)
    assert err.getvalue() == ""


def test_a_build_quicker_than_the_delay_shows_nothing(slow_factory: str, monkeypatch: pytest.MonkeyPatch) -> None:
    err = FakeStderr(terminal=True)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(lrrules.sources, "STATUS_AFTER", 60.0)
    open_model(slow_factory, model_args={"wait_for_status": False})
    assert err.getvalue() == ""
