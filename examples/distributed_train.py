"""Train with lrrules' groups under DDP or FSDP2, on the CPU, in two processes (gloo).

    python examples/distributed_train.py --mode ddp
    python examples/distributed_train.py --mode fsdp2 --steps 5
    torchrun --nproc-per-node 2 examples/distributed_train.py --mode ddp

The order is what matters (see docs/distributed.md): freeze before wrapping, build the optimizer
after wrapping. Names are unwrapped by lrrules, so the rule file is the one used for the bare model.
Random weights and random data: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import timm
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import lrrules

RULES = Path(__file__).with_name("resnet18-discriminative.yaml")


def wrap(model: nn.Module, mode: str) -> nn.Module:
    if mode == "ddp":
        return nn.parallel.DistributedDataParallel(model)
    from torch.distributed.fsdp import fully_shard

    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        fully_shard(stage)
    fully_shard(model)
    return model


def say(line: str) -> None:
    """One line in one write: the ranks share stdout, and their lines must not interleave."""
    os.write(1, (line + "\n").encode())


def train(rank: int, world: int, mode: str, steps: int, store: str) -> None:
    if "RANK" not in os.environ:  # started by mp.spawn rather than torchrun
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    else:
        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=2)

    rules = lrrules.load(RULES)
    lrrules.resolve(rules, model).apply_freeze()        # 1. freeze on the bare model: DDP fixes its buckets when built
    model = wrap(model, mode)                  # 2. wrap (FSDP2 swaps parameters for sharded DTensors)
    optimizer, plan = lrrules.build(rules, model)       # 3. build the optimizer on the wrapped model

    torch.manual_seed(rank)
    for step in range(steps):
        x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 2, (8,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if rank == 0:
            say(f"[{mode}] step {step}: loss {loss.item():.4f}")
    lrs = sorted({round(g["lr"], 12) for g in optimizer.param_groups})
    say(f"[{mode}] rank {rank}: {len(optimizer.param_groups)} groups, lrs {lrs}, "
        f"fingerprint {plan.fingerprint}, {len(plan.frozen)} frozen")
    dist.barrier()  # no rank tears gloo down while another still talks to it
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("ddp", "fsdp2"), default="ddp")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if "RANK" in os.environ:
        train(0, 0, args.mode, args.steps, "")
        return
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(train, args=(2, args.mode, args.steps, os.path.join(folder, "store")), nprocs=2, join=True)


if __name__ == "__main__":
    main()
