"""Hugging Face Trainer on two gloo ranks on the CPU: lrrules.build's optimizer through
``optimizers=(optimizer, None)``, a checkpoint every two steps, and ``resume_from_checkpoint``,
guarded by the layout record in the optimizer's state dict.

    python examples/engines/hf_trainer_resume.py --out /tmp/hf

Writes, per rank, the parameters of a run that went straight through four steps and of one resumed
at step two, and what a foreign rule file's optimizer met on resume (tests/test_engine_hf_trainer.py).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp
from torch import nn

import lrrules

RULES = """
version: 1
defaults: {{lr: 0.01, weight_decay: 0.1}}
optimizer: {{type: AdamW}}
rules:
  - {{name: head, match: "net.{head}.*", lr_mult: 10}}
  - {{name: body, match: {{not: "net.{head}.*"}}}}
modifiers:
  - {{name: no-decay, match: {{ndim: 1}}, weight_decay: 0}}
"""


class Tiny(nn.Module):
    """What the Trainer needs of a model: keyword inputs in, a loss out."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 4))  # "0" and "2": same shapes

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": (self.net(x) - labels).square().mean()}


def data() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [{"x": torch.randn(4, generator=generator), "labels": torch.randn(4, generator=generator)} for _ in range(16)]


def train(out: Path, head: str = "2", resume: str | None = None) -> dict[str, torch.Tensor]:
    from transformers import Trainer, TrainingArguments

    model = Tiny(seed=0 if resume is None else 1)  # a resumed run owes its start to the checkpoint alone
    optimizer, _ = lrrules.build(lrrules.loads(RULES.format(head=head)), model)
    args = TrainingArguments(output_dir=str(out), max_steps=4, save_steps=2, per_device_train_batch_size=2,
                             use_cpu=True, ddp_backend="gloo", report_to=[], logging_strategy="no",
                             dataloader_num_workers=0, disable_tqdm=True, seed=0)
    Trainer(model=model, args=args, train_dataset=data(), optimizers=(optimizer, None)).train(resume_from_checkpoint=resume)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    result: dict[str, Any] = {"straight": train(Path(out, "straight"))}
    checkpoint = str(Path(out, "straight", "checkpoint-2"))
    result["resumed"] = train(Path(out, "resumed"), resume=checkpoint)
    try:  # "0" and "2" trade groups: the moments have the same sizes, on other tensors
        train(Path(out, "foreign"), head="0", resume=checkpoint)
        result["refused"] = ""
    except lrrules.ResumeError as error:
        result["refused"] = str(error)
    torch.save(result, Path(out, f"rank{rank}.pt"))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def main(out: Path, port: int = 29535) -> None:
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(worker, args=(2, port, str(out)), nprocs=2, join=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port", type=int, default=29535)
    args = parser.parse_args()
    main(args.out, args.port)
