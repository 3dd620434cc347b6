"""One rank of the distributed tests (tests/test_distributed.py): train two steps with lrrules'
groups under a wrapper, and write what this rank saw to a JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

import lrrules

from .conftest import TinyNet

RULES = """
version: 1
defaults: {lr: 0.1, weight_decay: 0.0}
optimizer: {type: SGD}
layers: {by: module}
rules:
  - {name: head, match: "fc.*", lr_mult: 10}
  - {name: stem, match: ["conv1.*", "bn1.*"], freeze: true}
  - {name: stages, match: {regex: '^layer(?P<s>\\d)\\.'}, lr_mult: "0.5 ** depth"}
"""


def wrap(model: nn.Module, mode: str) -> nn.Module:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    if "checkpoint" in mode:
        model.layer1 = checkpoint_wrapper(model.layer1)  # type: ignore[assignment]
    if "fsdp2" in mode:
        from torch.distributed.fsdp import fully_shard

        fully_shard(model.layer1)
        fully_shard(model.layer2)
        fully_shard(model)
    if "ddp-subclass" in mode:
        model = MMDistributedDataParallel(model)
    elif "ddp" in mode:
        model = nn.parallel.DistributedDataParallel(model)
    return model


class MMDistributedDataParallel(nn.parallel.DistributedDataParallel):
    """A subclass with another name, as MMEngine's Runner wraps models: unwrapped by class, not name."""


def local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


def run(rank: int, world: int, store: str, out: str, mode: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        rules = lrrules.loads(RULES)
        torch.manual_seed(0)
        bare = lrrules.resolve(rules, TinyNet())
        expected = {a.name: [a.status, a.lr] for a in bare.params}

        torch.manual_seed(0)
        model = TinyNet()
        lrrules.resolve(rules, model).apply_freeze()  # before wrapping: DDP fixes its gradient buckets at construction
        model = wrap(model, mode)
        plan = lrrules.resolve(rules, model)
        optimizer = lrrules.build_optimizer(rules, model)
        updates: list[list[Any]] = []
        for step in range(2):
            optimizer.zero_grad()
            torch.manual_seed(100 + rank + 10 * step)
            model(torch.randn(4, 3, 8, 8)).square().mean().backward()
            before = {n: local(p.detach()).clone() for g in optimizer.param_groups
                      for n, p in zip(g["param_names"], g["params"])}
            optimizer.step()
            for group in optimizer.param_groups:
                for name, param in zip(group["param_names"], group["params"]):
                    moved = local(param.detach()) - before[name]
                    wanted = -group["lr"] * local(param.grad)
                    updates.append([name, float((moved - wanted).abs().max()), float(wanted.abs().max())])
        groups = [[list(g["param_names"]), g["lr"]] for g in optimizer.param_groups]
        every: list[Any] = [None] * world
        dist.all_gather_object(every, groups)
        frozen = sorted(n for n, p in unwrapped_params(model) if not p.requires_grad)
        result = {
            "rank": rank,
            "mode": mode,
            "expected": expected,
            "resolved": {a.name: [a.status, a.lr] for a in plan.params},
            # torch.compile on top of the wrapper: names only (compiling a forward is minutes on a CPU)
            "compiled": {a.name: [a.status, a.lr] for a in lrrules.resolve(rules, torch.compile(model)).params},
            "groups_per_rank": every,
            "updates": updates,
            "frozen": frozen,
        }
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
        dist.barrier()  # no rank tears gloo down while another still talks to it
    finally:
        dist.destroy_process_group()


def unwrapped_params(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    from lrrules.params import collect

    infos, tensors = collect(model)
    return [(i.name, t) for i, t in zip(infos, tensors)]
