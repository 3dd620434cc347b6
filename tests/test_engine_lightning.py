"""The Lightning DDP strategy on two gloo ranks on the CPU (examples/engines/lightning_resume.py, run
as a user runs it): ``fit(ckpt_path=...)`` with lrrules.build's optimizer continues bit-exactly
like the run that went straight through, and a checkpoint saved under another rule file is refused by
name; the same under ModelParallelStrategy (FSDP2) with Muon + AdamW from one file
(examples/engines/lightning_fsdp2.py), through DCP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .test_engine_deepspeed import free_port

pytestmark = pytest.mark.slow
pytest.importorskip("lightning")

EXAMPLE = Path(__file__).parents[1] / "examples" / "engines" / "lightning_resume.py"


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    out = tmp_path_factory.mktemp("lightning")
    env = {**os.environ, "PYTHONPATH": str(EXAMPLE.parents[2]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLE), "--out", str(out), "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_fit_from_a_checkpoint_is_bit_exact(ranks: list[dict[str, object]]) -> None:
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


FSDP2 = EXAMPLE.with_name("lightning_fsdp2.py")


@pytest.fixture(scope="module")
def sharded_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    out = tmp_path_factory.mktemp("lightning-fsdp2")
    env = {**os.environ, "PYTHONPATH": str(FSDP2.parents[2]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(FSDP2), "--out", str(out), "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_model_parallel_strategy_with_muon_and_adamw_resumes_bit_exactly(sharded_ranks: list[dict[str, object]]) -> None:
    for result in sharded_ranks:
        straight, resumed = result["straight"], result["resumed"]
        assert isinstance(straight, dict) and isinstance(resumed, dict)
        assert len(straight) == 11 and straight.keys() == resumed.keys()
        for name in straight:  # full tensors, gathered from both ranks' shards
            assert torch.equal(straight[name], resumed[name]), name


def test_model_parallel_strategy_refuses_a_foreign_layout_by_name(sharded_ranks: list[dict[str, object]]) -> None:
    for result in sharded_ranks:
        assert "another group layout" in str(result["refused"])
        assert "'blocks.0.norm.weight' moved from group 1 to group 0" in str(result["refused"])
