"""The config-system examples in examples/integrations/ run: Hydra (compose API, instantiate with
the model passed in), a Trainer subclass's create_optimizer, a torchtune-style config."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parent.parent / "examples" / "integrations"


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hydra_config_with_an_inline_rule_file_and_interpolations() -> None:
    pytest.importorskip("hydra")
    result = example("hydra_app").run(["lr=1e-3", "decay=0.5"])
    assert result["base_lr"] == 1e-3
    assert max(result["lrs"]) == pytest.approx(1e-2)  # the head, 10x the interpolated lr
    assert min(result["lrs"]) == pytest.approx(1e-3 * 0.5 ** 4)  # the embedding end, decay from the command line
    assert result["losses"][-1] < result["losses"][0]


def test_a_trainer_subclass_builds_its_optimizer_from_the_rules() -> None:
    pytest.importorskip("accelerate")
    result = example("hf_trainer_subclass").run(steps=3)
    assert sorted(result["initial"]) == pytest.approx(sorted(result["planned"]))  # the Trainer's scheduler kept them
    assert len(set(result["planned"])) > 2


def test_a_torchtune_style_config_instantiates_lrrules_optimizer() -> None:
    result = example("torchtune_style").run()
    assert result["frozen"] == ["model.embed_tokens.weight"]
    assert max(result["lrs"]) == pytest.approx(1e-4)  # the head: 5 x 2e-5
    assert result["losses"][-1] < result["losses"][0]
