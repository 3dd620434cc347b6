"""Accelerate with DDP on the CPU, two gloo ranks (examples/engines/accelerate_resume.py, run as a
user runs it): save_state/load_state resume bit-exactly with lrrules.build's optimizer, a state saved
under another rule file is refused by name, and an lr edited since the save is applied or reported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .test_engine_deepspeed import free_port

pytestmark = pytest.mark.slow
pytest.importorskip("accelerate")

EXAMPLE = Path(__file__).parents[1] / "examples" / "engines" / "accelerate_resume.py"


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    out = tmp_path_factory.mktemp("accelerate")
    env = {**os.environ, "PYTHONPATH": str(EXAMPLE.parents[2]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLE), "--out", str(out), "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_load_state_resumes_bit_exactly(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        straight, resumed = result["straight"], result["resumed"]
        assert isinstance(straight, dict) and isinstance(resumed, dict)
        assert sorted(straight) == ["0.bias", "0.weight", "1.bias", "1.weight", "2.bias", "2.weight"]
        for name in straight:
            assert torch.equal(straight[name], resumed[name]), name


def test_a_foreign_layout_is_refused_by_name(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        assert "another group layout" in str(result["refused"])
        assert "'2.weight' moved from group 2 to group 3" in str(result["refused"])


def test_an_edited_lr_is_applied_or_reported(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        lrs, caught = result["edited_lrs"], result["edited_warnings"]
        assert isinstance(lrs, list) and isinstance(caught, list)
        # the head's lr_mult went from 10 to 20: the checkpoint's 0.1 stays, and a ResumeWarning says so
        assert lrs == [0.01, 0.01, 0.1, 0.1]
        assert any(m.startswith("ResumeWarning: ") and "lr 0.1 in the checkpoint, 0.2 in the rules" in m
                   for m in caught), caught
