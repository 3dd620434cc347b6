"""The same rule file gives the same assignment and the right updates under real wrappers: a gloo
process group of two ranks training with DDP (and a subclass of it, as MMEngine's), FSDP2 and
activation checkpointing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from .distributed_worker import run

# Subprocesses, training runs and model builds: seconds each (make test-fast skips them).
pytestmark = pytest.mark.slow

WORLD = 2


@pytest.mark.parametrize("mode", ["ddp", "ddp-subclass", "checkpoint+ddp", "fsdp2", "checkpoint+fsdp2"])
def test_wrapped_training_uses_the_bare_models_assignment(tmp_path: Path, mode: str) -> None:
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    mp.spawn(run, args=(WORLD, str(tmp_path / "store"), str(tmp_path), mode), nprocs=WORLD, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]

    for result in results:
        assert result["resolved"] == result["expected"], "wrapped names resolve like the bare model's"
        assert result["compiled"] == result["expected"], "and so do they under torch.compile on top"
        assert result["frozen"] == ["bn1.bias", "bn1.weight", "conv1.weight"]
        for name, error, size in result["updates"]:
            assert size > 0, f"{name} got a gradient"
            assert error <= 1e-6 * max(1.0, size), f"{name} moved by its own lr times its gradient"
    first = results[0]["groups_per_rank"]
    assert first[0] == first[1], "every rank's optimizer holds the same groups"
    lrs = {name: lr for names, lr in first[0] for name in names}
    assert lrs["fc.weight"] == pytest.approx(1.0)
    assert lrs["layer1.0.weight"] == pytest.approx(0.1 * 0.5**2) and lrs["layer2.1.bias"] == pytest.approx(0.1 * 0.5)
