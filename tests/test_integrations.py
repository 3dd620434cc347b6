"""Each integration example runs for a few steps, and the ratios between groups hold through it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

import lrrules

# Subprocesses, training runs and model builds: seconds each (make test-fast skips them).
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parent.parent / "examples" / "integrations"


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ratios(lrs: list[float]) -> list[float]:
    return [lr / lrs[-1] for lr in lrs]


def test_plain_loop_with_one_cycle() -> None:
    result = example("plain_loop").run(steps=6)
    assert len(set(result["planned"])) == 5
    assert ratios(result["final"]) == pytest.approx(ratios(result["planned"]), rel=1e-9)


def test_timm_create_optimizer_v2_with_timms_scheduler() -> None:
    result = example("timm_optimizer").run(steps=4)
    assert result["optimizer"] == "AdamW"
    assert ratios(result["final"]) == pytest.approx(ratios(result["planned"]), rel=1e-9)
    assert result["final"] != pytest.approx(result["planned"]), "the schedule moved the lrs"


def test_huggingface_trainer_keeps_the_layerwise_decay() -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    result = example("hf_trainer").run(steps=5)
    assert result["initial"] == pytest.approx(result["planned"])
    assert len(result["per_step"]) == 5
    for lrs in result["per_step"][:-1]:  # the linear schedule ends at 0
        assert ratios(lrs) == pytest.approx(ratios(result["planned"]), rel=1e-9)
    assert result["per_step"][1] != pytest.approx(result["per_step"][2]), "the schedule moved the lrs"
    assert min(result["planned"]) == pytest.approx(5e-5 * 0.8**3), "embeddings lowest"


def test_lightning_configure_optimizers_and_the_phase_callback() -> None:
    pytest.importorskip("lightning")
    module = example("lightning_module")
    result = module.run(epochs=4, batches=1)
    assert result["groups"] == result["planned_groups"]
    plan = lrrules.resolve(lrrules.load(module.RULES), module.Classifier(lrrules.load(module.RULES)).model)
    grouped = sum(len(g.params) for g in plan.groups)
    assert result["trainable_per_epoch"] == [grouped - len(plan.frozen_at(epoch=e)) for e in range(4)]
    assert result["trainable_per_epoch"] == sorted(result["trainable_per_epoch"]), "unfreezing, stage by stage"


def test_finetune_example_runs_with_a_small_budget(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("finetune", EXAMPLES.parent / "finetune" / "finetune.py")
    assert spec and spec.loader
    finetune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finetune)
    results = finetune.run(seeds=1, epochs=2, pretrain_epochs=1, shots=5, out=tmp_path)
    assert set(results["summary"]) == set(finetune.STRATEGIES)
    assert all(len(c[0]) == 2 and all(0 <= a <= 1 for a in c[0]) for c in results["curves"].values())
    table = (tmp_path / "RESULTS.md").read_text()
    assert all(name in table for name in finetune.STRATEGIES)
    assert (tmp_path / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_finetune_example_with_default_arguments_changes_no_tracked_file() -> None:
    # Run as a user runs it (its default output, a subprocess): the tracked results stay as they are.
    import subprocess
    import sys

    pytest.importorskip("sklearn")
    root = EXAMPLES.parent.parent

    def status() -> str:
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", "examples"],
                              cwd=root, capture_output=True, text=True, check=True).stdout

    before = status()
    done = subprocess.run([sys.executable, str(EXAMPLES.parent / "finetune" / "finetune.py"), "--smoke"],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    wrote = Path(done.stdout.splitlines()[-1].split()[1].rstrip(","))
    assert wrote.is_file() and root not in wrote.parents
    assert status() == before
    refused = subprocess.run([sys.executable, str(EXAMPLES.parent / "finetune" / "finetune.py"), "--smoke",
                              "--write-results"], cwd=root, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--write-results" in refused.stderr and status() == before


@pytest.mark.parametrize("rules", sorted((EXAMPLES.parent / "finetune" / "rules").glob("*.yaml")), ids=lambda p: p.name)
def test_finetune_rule_files_check_clean_against_the_model(rules: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from lrrules.cli import main

    monkeypatch.chdir(EXAMPLES.parent.parent)
    assert main(["check", str(rules), "--model", "examples.finetune.finetune:SmallCNN", "--strict"]) == 0
    assert capsys.readouterr().out == ""
