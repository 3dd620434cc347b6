"""Lightning's ModelParallelStrategy (FSDP2) on two gloo ranks on the CPU with Muon + AdamW from one
rule file: one combined optimizer, a distributed checkpoint after the first
epoch, ``fit(ckpt_path=...)``, guarded by the layout record DCP carries.

    python examples/engines/lightning_fsdp2.py --out /tmp/pl-fsdp2

Writes, per rank, the full parameters of a run that went straight through two epochs and of one
resumed after the first, and what another rule file's optimizer met (tests/test_engine_lightning.py).
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

# Muon for the hidden matrices, AdamW for the rest, in two groups (lrrules:muon's split, with decay).
RULES = """
version: 1
defaults: {lr: 0.01, weight_decay: 0.1}
optimizer: {type: AdamW}
optimizers:
  muon: {type: Muon}
rules:
  - {name: muon, match: {role: hidden, ndim: 2}, optimizer: muon, lr: 0.02}
  - {name: decay, match: ["embed.*", "head.weight"]}
  - {name: rest, fallback: true, weight_decay: 0.0}
"""
# The same tensors, another grouping (the norms' weights join 'decay'): a state saved under RULES is
# foreign here. DCP loads by key, so only an edit that keeps every group's keys reaches lrrules' check;
# one that adds a group or moves a tensor to the other optimizer fails in DCP's own load first.
OTHER = RULES.replace('"head.weight"]', '"head.weight", "blocks.*.norm.weight"]')


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 8)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc(self.norm(h)).relu()


class Tiny(pl.LightningModule):
    def __init__(self, seed: int, rules: str = RULES) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(16, 8)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(8, 4)
        self.rules = rules

    def configure_model(self) -> None:
        from torch.distributed.fsdp import fully_shard

        for block in self.blocks:  # the order: shard first, then build on the sharded tensors
            fully_shard(block, mesh=self.device_mesh["data_parallel"])
        fully_shard(self, mesh=self.device_mesh["data_parallel"])

    def configure_optimizers(self) -> Any:
        optimizer, _ = lrrules.build(lrrules.loads(self.rules), self)  # one CombinedOptimizer
        return optimizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # through forward: FSDP2 gathers the root's tensors there
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)  # type: ignore[no-any-return]

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        return self(batch[0]).square().mean()  # type: ignore[no-any-return]

    def train_dataloader(self) -> Any:
        data = torch.utils.data.TensorDataset(torch.randint(0, 16, (8, 3), generator=torch.Generator().manual_seed(0)))
        return torch.utils.data.DataLoader(data, batch_size=2, shuffle=False)


def fit(module: Tiny, out: Path, ckpt_path: str | None = None) -> dict[str, torch.Tensor]:
    from lightning.pytorch.strategies import ModelParallelStrategy

    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=out, save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    trainer = pl.Trainer(strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
                         accelerator="cpu", devices=2, max_epochs=2, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[checkpoints])
    trainer.fit(module, ckpt_path=ckpt_path)
    return {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone() for n, p in module.named_parameters()}


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    result: dict[str, Any] = {"straight": fit(Tiny(seed=0), Path(out, "straight"))}
    checkpoint = str(Path(out, "straight", "epoch=0.ckpt"))
    result["resumed"] = fit(Tiny(seed=1), Path(out, "resumed"), checkpoint)  # other weights: the checkpoint's alone
    try:
        fit(Tiny(seed=0, rules=OTHER), Path(out, "foreign"), checkpoint)
        result["refused"] = ""
    except lrrules.ResumeError as error:
        result["refused"] = str(error)
    torch.save(result, Path(out, f"rank{rank}.pt"))


def main(out: Path, port: int = 29537) -> None:
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(worker, args=(2, port, str(out)), nprocs=2, join=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port", type=int, default=29537)
    args = parser.parse_args()
    main(args.out, args.port)
