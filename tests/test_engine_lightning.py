"""The Lightning DDP strategy on two gloo ranks on the CPU (examples/engines/lightning_resume.py, run
as a user runs it): ``fit(ckpt_path=...)`` with lrrules.build's optimizer continues bit-exactly
like the run that went straight through, and a checkpoint saved under another rule file is refused by
name; the same under ModelParallelStrategy (FSDP2) with Muon + AdamW from one file
(examples/engines/lightning_fsdp2.py), through DCP."""

from __future__ import annotations

import pytest

from .engine_runs import assert_bit_exact, run_ranks

pytestmark = pytest.mark.slow
pytest.importorskip("lightning")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    return run_ranks("lightning_resume.py", tmp_path_factory.mktemp("lightning"))


def test_fit_from_a_checkpoint_is_bit_exact(ranks: list[dict[str, object]]) -> None:
    assert_bit_exact(ranks, tensors=6)


def test_a_foreign_layout_is_refused_by_name(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        assert "another group layout" in str(result["refused"])
        assert "'net.2.weight' moved from group 2 to group 3" in str(result["refused"])


@pytest.fixture(scope="module")
def sharded_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    return run_ranks("lightning_fsdp2.py", tmp_path_factory.mktemp("lightning-fsdp2"))


def test_model_parallel_strategy_with_muon_and_adamw_resumes_bit_exactly(sharded_ranks: list[dict[str, object]]) -> None:
    assert_bit_exact(sharded_ranks, tensors=11)  # full tensors, gathered from both ranks' shards


def test_model_parallel_strategy_refuses_a_foreign_layout_by_name(sharded_ranks: list[dict[str, object]]) -> None:
    for result in sharded_ranks:
        assert "another group layout" in str(result["refused"])
        assert "'blocks.0.norm.weight' moved from group 1 to group 0" in str(result["refused"])
