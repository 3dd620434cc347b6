"""DeepSpeed ZeRO-1/2 on the CPU, two gloo ranks (examples/engines/deepspeed_zero.py, run as a user
runs it): each tensor steps by its own group's lr and weight decay, a resume through
``save_checkpoint``/``load_checkpoint`` is bit-exact, a foreign layout is refused by name, phases are
refused with the reason."""

from __future__ import annotations

import pytest
import torch

from .engine_runs import run_ranks

pytestmark = pytest.mark.slow
pytest.importorskip("deepspeed")

# The first run on a machine builds DeepSpeed's CPU comm op (about ten minutes); later runs reuse it.
BUILD_S = 900


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    return run_ranks("deepspeed_zero.py", tmp_path_factory.mktemp("deepspeed"), timeout=BUILD_S)


@pytest.mark.parametrize("stage", [1, 2])
def test_each_tensor_steps_by_its_groups_lr_and_weight_decay(ranks: list[dict[str, object]], stage: int) -> None:
    for result in ranks:
        step = result[f"sgd_stage{stage}"]
        assert isinstance(step, dict)
        # the rule file: lr 0.01, head ("2.*") x10, weight decay 0.1 but 0 on 1-D tensors
        assert step["settings"] == {"0.weight": (0.01, 0.1), "0.bias": (0.01, 0.0), "1.weight": (0.01, 0.0),
                                    "1.bias": (0.01, 0.0), "2.weight": (0.1, 0.1), "2.bias": (0.1, 0.0)}
        for name, (lr, wd) in step["settings"].items():
            before, grad = step["before"][name], step["grad"][name]
            wanted = before - lr * (grad + wd * before)  # torch's SGD: decay added to the gradient
            assert torch.allclose(step["after"][name], wanted, rtol=0, atol=1e-7), name
            assert not torch.equal(step["after"][name], before), f"{name} moved"


def test_groups_from_deepspeeds_config_keep_their_lrs(ranks: list[dict[str, object]]) -> None:
    # the config's AdamW says lr 1.0, weight decay 0.5: every group's own values win
    for result in ranks:
        assert sorted(map(tuple, result["config_groups"])) == [(0.01, 0.0), (0.01, 0.1), (0.1, 0.0), (0.1, 0.1)]


def test_resume_is_bit_exact(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        straight, resumed = result["straight"], result["resumed"]
        assert isinstance(straight, dict) and isinstance(resumed, dict) and straight.keys() == resumed.keys()
        for name in straight:
            assert torch.equal(straight[name], resumed[name]), name
        assert "unchanged" in str(result["report"])


def test_a_foreign_layout_is_refused_by_name(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        refused = str(result["refused"])
        assert "another group layout" in refused
        assert "'2.weight' moved from group 2 to group 3" in refused


def test_phases_are_refused_with_the_reason(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        assert "phases cannot hold under DeepSpeed ZeRO" in str(result["phases"])
        assert "zero-fills the gradient" in str(result["phases"])


def test_an_edited_lr_is_reported_after_the_resume(ranks: list[dict[str, object]]) -> None:
    for result in ranks:
        # the head's lr_mult went from 10 to 20: DeepSpeed keeps the checkpoint's 0.1, lrrules says so
        assert result["edited_lrs"] == [0.01, 0.01, 0.1, 0.1]
        assert "lr 0.1 in the checkpoint, 0.2 in the rules" in str(result["edited"])
        assert any(m.startswith("ResumeWarning: ") and "0.2 in the rules" in m for m in result["edited_warnings"])
