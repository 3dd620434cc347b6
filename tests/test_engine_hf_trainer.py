"""The Hugging Face Trainer on two gloo ranks on the CPU (examples/engines/hf_trainer_resume.py, run
as a user runs it): ``resume_from_checkpoint`` with lrrules.build's optimizer continues bit-exactly
like the run that went straight through, and a checkpoint saved under another rule file is refused by
name."""

from __future__ import annotations

import pytest

from .engine_runs import assert_bit_exact, run_ranks

pytestmark = pytest.mark.slow
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    return run_ranks("hf_trainer_resume.py", tmp_path_factory.mktemp("hf"))


def test_resume_from_checkpoint_is_bit_exact(ranks: list[dict[str, object]]) -> None:
    assert_bit_exact(ranks, tensors=6)  # the resumed model started from other weights: only the checkpoint can make it equal


def test_a_foreign_layout_is_refused_by_name(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        assert "another group layout" in str(result["refused"])
        assert "'net.2.weight' moved from group 2 to group 3" in str(result["refused"])
