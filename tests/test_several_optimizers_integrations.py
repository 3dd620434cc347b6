"""The combined optimizer (Muon + AdamW from one file) driven by timm's scheduler, the Hugging Face
Trainer and Lightning, as each drives any optimizer (issue 13)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

import lrrules

from .test_several_optimizers import EXAMPLE, batches, llama

pytestmark = pytest.mark.slow  # training runs through trainers: seconds each


def moved(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


def inner_states(optimizer: Any) -> dict[str, int]:
    return {name: len(o.state) for name, o in optimizer.optimizers.items()}


def test_timms_cosine_scheduler_drives_both_optimizers() -> None:
    from timm.scheduler import CosineLRScheduler

    model = llama()
    optimizer, plan = lrrules.build(EXAMPLE, model)
    scheduler = CosineLRScheduler(optimizer, t_initial=4, lr_min=0.0, warmup_t=0)
    for epoch in range(3):
        for ids in batches(1):
            optimizer.zero_grad()
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
        scheduler.step(epoch + 1)
        factor = 0.5 * (1 + torch.cos(torch.tensor(torch.pi * (epoch + 1) / 4))).item()
        inner = [g for o in optimizer.optimizers.values() for g in o.param_groups]
        assert [g["lr"] for g in inner] == pytest.approx([g.lr * factor for g in plan.groups], rel=1e-6)


def test_the_hugging_face_trainer_trains_both_with_its_own_schedule() -> None:
    pytest.importorskip("accelerate")
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Record(TrainerCallback):  # type: ignore[misc]
        lrs: list[list[float]] = []

        def on_step_end(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kw: Any) -> None:
            self.lrs.append([g["lr"] for g in optimizer.param_groups])

    class Data(torch.utils.data.Dataset):  # type: ignore[type-arg]
        ids = torch.cat(batches(8))

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": self.ids[i], "labels": self.ids[i]}

    model = llama()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer, plan = lrrules.build(EXAMPLE, model)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, max_steps=4, per_device_train_batch_size=4, use_cpu=True,
                                 report_to=[], save_strategy="no", logging_strategy="no", warmup_steps=0,
                                 dataloader_num_workers=0, disable_tqdm=True)
        Trainer(model=model, args=args, train_dataset=Data(), optimizers=(optimizer, None),
                callbacks=[record := Record()]).train()
    assert moved(before, model) == set(before)
    assert all(n > 0 for n in inner_states(optimizer).values())
    for step, lrs in enumerate(record.lrs[:-1]):  # the linear schedule, each group from its own lr
        factor = 1 - (step + 1) / 4
        assert lrs == pytest.approx([g.lr * factor for g in plan.groups], rel=1e-9)


def test_lightning_drives_the_combined_optimizer_and_the_rule_scheduler() -> None:
    lightning = pytest.importorskip("lightning")

    class LM(lightning.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = llama()
            self.lrs: list[list[float]] = []

        def training_step(self, ids: torch.Tensor, _: int) -> torch.Tensor:
            self.lrs.append([g["lr"] for g in self.optimizers().param_groups])
            return self.model(input_ids=ids, labels=ids).loss

        def configure_optimizers(self) -> Any:
            optimizer, self.plan = lrrules.build(RULES_WARM, self.model)
            scheduler = lrrules.rule_scheduler(optimizer, self.plan)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    module = LM()
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    trainer = lightning.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, torch.utils.data.DataLoader(torch.cat(batches(4)), batch_size=2))
    assert moved(before, module.model) == set(before)
    optimizer = trainer.optimizers[0]
    assert all(n > 0 for n in inner_states(optimizer).values())
    for step, lrs in enumerate(module.lrs):
        expected = [g.lr * (min(1, (step + 1) / 4) if g.optimizer == "muon" else 1) for g in module.plan.groups]
        assert lrs == pytest.approx(expected, rel=1e-9)


RULES_WARM = lrrules.loads(EXAMPLE.read_text().replace(
    "    optimizer: muon\n", "    optimizer: muon\n    lr_schedule: 'min(1, (step + 1) / 4)'\n"), path=str(EXAMPLE))


def test_the_muon_llama_example_runs_and_learns() -> None:
    import importlib.util

    path = Path(__file__).parent.parent / "examples" / "integrations" / "muon_llama.py"
    spec = importlib.util.spec_from_file_location("muon_llama", path)
    assert spec and spec.loader
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.run(steps=8)
    assert result["optimizers"] == {"default": "AdamW", "muon": "Muon"}
    assert result["losses"][-1] < result["losses"][0]
