"""Lightning's DDP strategy on two gloo ranks on the CPU: lrrules.build's optimizer from
``configure_optimizers``, a checkpoint after the first epoch, and ``fit(ckpt_path=...)``, guarded by
the layout record in the optimizer's state dict.

    python examples/engines/lightning_resume.py --out /tmp/pl

Writes, per rank, the parameters of a run that went straight through two epochs and of one resumed
after the first, and what a foreign rule file's optimizer met on resume (tests/test_engine_lightning.py).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
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


class Tiny(pl.LightningModule):
    def __init__(self, seed: int, head: str = "2") -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 4))  # "0" and "2": same shapes
        self.head = head

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        return (self.net(x) - y).square().mean()

    def configure_optimizers(self) -> Any:
        # built here, on the module Lightning has wrapped: the names are the bare model's
        optimizer, _ = lrrules.build(lrrules.loads(RULES.format(head=self.head)), self)
        return optimizer

    def train_dataloader(self) -> Any:
        generator = torch.Generator().manual_seed(0)
        data = torch.utils.data.TensorDataset(torch.randn(8, 4, generator=generator), torch.randn(8, 4, generator=generator))
        return torch.utils.data.DataLoader(data, batch_size=2, shuffle=False)


def fit(module: Tiny, out: Path, ckpt_path: str | None = None) -> dict[str, torch.Tensor]:
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=out, save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_epochs=2, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[checkpoints])
    trainer.fit(module, ckpt_path=ckpt_path)
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def worker(rank: int, world: int, port: int, out: str) -> None:
    # Started by this script (as by torchrun): Lightning sees LOCAL_RANK and launches nothing itself.
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    result: dict[str, Any] = {"straight": fit(Tiny(seed=0), Path(out, "straight"))}
    checkpoint = str(Path(out, "straight", "epoch=0.ckpt"))
    # other initial weights: only the checkpoint can make the resumed run equal to the straight one
    result["resumed"] = fit(Tiny(seed=1), Path(out, "resumed"), checkpoint)
    try:  # "0" and "2" trade groups: the moments have the same sizes, on other tensors
        fit(Tiny(seed=0, head="0"), Path(out, "foreign"), checkpoint)
        result["refused"] = ""
    except lrrules.ResumeError as error:
        result["refused"] = str(error)
    torch.save(result, Path(out, f"rank{rank}.pt"))


def main(out: Path, port: int = 29536) -> None:
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(worker, args=(2, port, str(out)), nprocs=2, join=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port", type=int, default=29536)
    args = parser.parse_args()
    main(args.out, args.port)
