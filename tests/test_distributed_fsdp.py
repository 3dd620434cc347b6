"""Resolve once, bind anywhere, on a real two-rank gloo group (one spawn runs every check, see
tests/distributed_checks.py): FSDP2 + Muon/AdamW from one file trains with foreach AdamW over groups
that never mix DTensors and plain tensors, checkpoints through DCP (flattened and not) and resumes
bit-exactly; a foreign layout is refused; an edited lr after the resume is reported; a phase-frozen
tensor stays exactly still under DDP and FSDP2; the orders that cannot work are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from .distributed_checks import run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    tmp = tmp_path_factory.mktemp("checks")
    mp.spawn(run, args=(2, str(tmp / "store"), str(tmp)), nprocs=2, join=True)
    return [json.loads((tmp / f"checks{rank}.json").read_text()) for rank in range(2)]


def check(results: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    found = [r[name] for r in results]
    assert all("error" not in f for f in found), found[0].get("error")
    return found


@pytest.mark.parametrize("flatten", [True, False])
def test_fsdp2_muon_and_adamw_checkpoint_through_dcp_and_resume_bit_exactly(results: list[dict[str, Any]],
                                                                          flatten: bool) -> None:
    for seen in check(results, "fsdp2_dcp"):
        groups = seen[f"groups_{flatten}"]
        assert all(len(kinds) == 1 for _, kinds in groups), f"no group mixes DTensors and plain tensors: {groups}"
        assert [n for n, _ in groups] == ["decay", "rest@mesh(2)[S(0)]", "rest", "muon"]
        assert seen[f"moved_{flatten}"] == 11, "every tensor trained"
        assert seen[f"bit_exact_{flatten}"] == [], "the resumed run equals the uninterrupted one, tensor by tensor"
        edited = seen[f"edited_lr_{flatten}"]
        assert len(edited) == 1 and "group 0: lr 0.01 in the checkpoint, 0.03 in the rules" in edited[0]


def test_a_foreign_layout_is_refused_under_dcp(results: list[dict[str, Any]]) -> None:
    for seen in check(results, "fsdp2_dcp"):
        # flattened, DCP loads by tensor name and the guard names what moved
        assert seen["foreign_True"].startswith("ResumeError:")
        assert "'blocks.0.norm.weight' moved from group 2 to group 1" in seen["foreign_True"]
        # by group index, DCP itself refuses the other groups' keys before any state is loaded
        assert "Missing key in checkpoint state_dict: optim.param_groups." in seen["foreign_False"]


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_a_phase_frozen_tensor_stays_exactly_still(results: list[dict[str, Any]], mode: str) -> None:
    for seen in check(results, "phases"):
        still = seen[mode]
        assert all(still[n] for n in still if n.startswith("blocks.0.")), "frozen by the phase: not moved at all"
        assert not any(still[n] for n in still if not n.startswith("blocks.0.")), "the others trained"
        assert not any(seen[f"{mode}_unfrozen"].values()), "and once unfrozen, it trains"


def test_the_orders_that_cannot_work_are_refused(results: list[dict[str, Any]]) -> None:
    for seen in check(results, "phases"):
        assert seen["unreduced"].startswith("ResolveError:") and "frozen when DistributedDataParallel" in seen["unreduced"]
        assert "'blocks.0.fc.bias'" in seen["unreduced"]
        assert seen["stale"].startswith("ResolveError:") and "replaced or removed" in seen["stale"]
