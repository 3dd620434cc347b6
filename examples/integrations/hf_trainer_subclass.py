"""Hugging Face Trainer through a subclass's ``create_optimizer``: the Trainer makes its own
scheduler, checkpoints and resumes as usual, and the groups come from the rule file.

    python examples/integrations/hf_trainer_subclass.py --steps 10

Overriding ``create_optimizer`` (rather than passing ``optimizers=``) keeps the Trainer in charge of
when the optimizer is made: after the model is moved and wrapped, as its own would be.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import lrrules

HERE = Path(__file__).parent
RULES = HERE.parent / "bert-layerwise-decay.yaml"


class LrrulesTrainer(Trainer):
    """A Trainer whose optimizer is ``lrrules.build``'s for the rule file it is given."""

    def __init__(self, *args: Any, rules: str | Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rules = rules
        self.plan: lrrules.Plan | None = None

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            target = model if model is not None else self.model
            assert target is not None
            self.optimizer, self.plan = lrrules.build(self.rules, target)
        return self.optimizer


class RandomText(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, size: int, vocab: int, length: int = 16) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, vocab, (size, length), generator=generator)
        self.labels = torch.randint(0, 2, (size,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def run(steps: int = 10) -> dict[str, Any]:
    torch.manual_seed(0)
    config = BertConfig.from_pretrained(HERE / "tiny-bert", num_labels=2)
    model = BertForSequenceClassification(config)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=8, use_cpu=True,
                                 report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True,
                                 dataloader_num_workers=0)
        trainer = LrrulesTrainer(model=model, args=args, train_dataset=RandomText(64, config.vocab_size), rules=RULES)
        result = trainer.train()
    assert trainer.plan is not None and trainer.optimizer is not None
    return {"planned": trainer.plan.group_lrs(), "initial": [g["initial_lr"] for g in trainer.optimizer.param_groups],
            "loss": result.training_loss}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    result = run(parser.parse_args().steps)
    print(f"loss {result['loss']:.4f}; {len(result['planned'])} groups from the rule file")
