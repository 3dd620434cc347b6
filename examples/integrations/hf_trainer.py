"""Hugging Face Trainer with lrrules' optimizer: a small randomly initialised BERT built from a local
config (nothing downloaded), fine-tuned with the usual layer-wise lr decay.

    python examples/integrations/hf_trainer.py --steps 10

Trainer takes the optimizer through ``optimizers=(optimizer, None)`` and builds its linear schedule
on it, which scales every group's own lr, so the decay between layers holds.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

import lrrules

HERE = Path(__file__).parent
RULES = HERE.parent / "bert-layerwise-decay.yaml"


class RandomText(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, size: int, vocab: int, length: int = 16) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, vocab, (size, length), generator=generator)
        self.labels = torch.randint(0, 2, (size,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


class RecordLrs(TrainerCallback):  # type: ignore[misc]
    """Each group's lr after every step, to see the schedule keep the ratios between groups."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []

    def on_step_end(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        self.lrs.append([g["lr"] for g in optimizer.param_groups])


def run(steps: int = 10) -> dict[str, Any]:
    torch.manual_seed(0)
    config = BertConfig.from_pretrained(HERE / "tiny-bert", num_labels=2)
    model = BertForSequenceClassification(config)
    optimizer, plan = lrrules.build(RULES, model)  # the layers are counted from the model (by: blocks)
    planned = plan.group_lrs()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=8, use_cpu=True,
                                 report_to=[], save_strategy="no", logging_strategy="no", warmup_steps=2,
                                 dataloader_num_workers=0, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=RandomText(64, config.vocab_size),
                          optimizers=(optimizer, None), callbacks=[recorder := RecordLrs()])
        result = trainer.train()
    return {"planned": planned, "per_step": recorder.lrs,
            "initial": [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups], "loss": result.training_loss}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    result = run(parser.parse_args().steps)
    print(f"loss {result['loss']:.4f}; {len(result['planned'])} groups, lrs from {min(result['planned']):.2e} "
          f"to {max(result['planned']):.2e}")
