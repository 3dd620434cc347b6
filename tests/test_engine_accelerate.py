"""Accelerate on the CPU, two gloo ranks (examples/engines/accelerate_resume.py, run as a user runs
it), under DDP and under Accelerate's own FSDP2 code (`--mode fsdp2`): save_state/load_state resume
bit-exactly with lrrules.build's optimizer, a state saved under another rule file is refused, and an
lr edited since the save is applied or reported."""

from __future__ import annotations

import pytest
import torch

from .engine_runs import run_ranks

pytestmark = pytest.mark.slow
pytest.importorskip("accelerate")

NAMES = ["0.bias", "0.weight", "1.bias", "1.weight", "2.bias", "2.weight"]


@pytest.fixture(scope="module", params=["ddp", "fsdp2"])
def ranks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    results = run_ranks("accelerate_resume.py", tmp_path_factory.mktemp(request.param), "--mode", request.param)
    for result in results:
        result["mode"] = request.param
    return results


def test_load_state_resumes_bit_exactly(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        straight, resumed = result["straight"], result["resumed"]
        assert isinstance(straight, dict) and isinstance(resumed, dict)
        assert sorted(straight) == NAMES and sorted(resumed) == NAMES
        assert straight["0.weight"].shape == (4, 4)  # full tensors, under FSDP2 too
        for name in straight:
            assert torch.equal(straight[name], resumed[name]), name


def test_muon_and_adamw_from_one_file_resume_bit_exactly_under_fsdp2(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        if result["mode"] == "ddp":
            continue
        muon = result["muon"]
        assert isinstance(muon, dict)
        straight, resumed = muon["straight"], muon["resumed"]
        assert sorted(straight) == sorted(resumed) and "1.weight" in straight
        for name in straight:
            assert torch.equal(straight[name], resumed[name]), name


def test_the_mode_ran_the_engine_path_it_names(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        # Accelerate 1.16 drops an fsdp_plugin on the CPU: it says MULTI_CPU either way
        assert result["given"] == "DistributedType.MULTI_CPU"
        wrapped, saved = result["wrapped"], result["saved"]
        assert isinstance(wrapped, list) and isinstance(saved, list)
        wrapper, param = wrapped
        if result["mode"] == "ddp":
            assert (wrapper, param) == ("DistributedDataParallel", "Parameter")
            assert "optimizer.bin" in saved
        else:  # fully_shard in prepare(), DCP in save_state()
            assert wrapper.startswith("FSDP") and param == "DTensor"
            assert "optimizer_0" in saved and "pytorch_model_fsdp_0" in saved


def test_a_foreign_layout_is_refused(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        refused = str(result["refused"])  # a ResumeError's text; "" had it loaded
        if result["mode"] == "ddp":
            assert "another group layout" in refused
            assert "'2.weight' moved from group 2 to group 3" in refused
        else:
            # DCP hands each saved group to a group now holding one of its tensors: a group no saved
            # group lands on arrives with no settings and no names: refused, naming what it holds now
            assert "saved under another group layout" in refused and "got no saved group" in refused


def test_an_edited_lr_is_applied_or_reported(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        lrs, caught = result["edited_lrs"], result["edited_warnings"]
        assert isinstance(lrs, list) and isinstance(caught, list)
        # the head's lr_mult went from 10 to 20: the checkpoint's 0.1 stays, and a ResumeWarning says so
        assert lrs == [0.01, 0.01, 0.1, 0.1]
        assert any(m.startswith("ResumeWarning: ") and "lr 0.1 in the checkpoint, 0.2 in the rules" in m
                   for m in caught), caught
