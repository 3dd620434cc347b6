"""The Hugging Face Trainer on two gloo ranks on the CPU (examples/engines/hf_trainer_resume.py, run
as a user runs it): ``resume_from_checkpoint`` with lrrules.build's optimizer continues bit-exactly
like the run that went straight through, and a checkpoint saved under another rule file is refused by
name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .test_engine_deepspeed import free_port

pytestmark = pytest.mark.slow
pytest.importorskip("transformers")

EXAMPLE = Path(__file__).parents[1] / "examples" / "engines" / "hf_trainer_resume.py"


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    out = tmp_path_factory.mktemp("hf")
    env = {**os.environ, "PYTHONPATH": str(EXAMPLE.parents[2]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLE), "--out", str(out), "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_resume_from_checkpoint_is_bit_exact(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        straight, resumed = result["straight"], result["resumed"]
        assert isinstance(straight, dict) and isinstance(resumed, dict)
        assert len(straight) == 6 and straight.keys() == resumed.keys()
        for name in straight:  # the resumed model started from other weights: only the checkpoint can make it equal
            assert torch.equal(straight[name], resumed[name]), name


def test_a_foreign_layout_is_refused_by_name(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        assert "another group layout" in str(result["refused"])
        assert "'net.2.weight' moved from group 2 to group 3" in str(result["refused"])
