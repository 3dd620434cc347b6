"""Accelerate on the CPU, two gloo ranks: lrrules.build's optimizer through prepare(),
save_state() and load_state(), guarded by the layout record in the optimizer's state dict.

    python examples/engines/accelerate_resume.py --out /tmp/acc               # DDP
    python examples/engines/accelerate_resume.py --out /tmp/acc --mode fsdp2  # FSDP2, see below

Accelerate 1.16 keeps an fsdp_plugin only on GPU-like devices: with cpu=True it stays MULTI_CPU and
wraps the model in DDP, silently. `--mode fsdp2` records that, then sets the distributed type to
FSDP (in AcceleratorState and PartialState) so that Accelerate's own FSDP2 code runs:
fully_shard in prepare(), get_optimizer_state_dict + dcp.save in save_state(), dcp.load +
set_optimizer_state_dict in load_state(). That forcing is for this test on the CPU only.

Writes, per rank, the parameters of a run that went straight through and of one resumed from its
checkpoint, and what a foreign rule file's optimizer met on load (tests/test_engine_accelerate.py).
"""

from __future__ import annotations

import argparse
import os
import warnings
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
  - {{name: head, match: "{head}.*", lr_mult: {mult}}}
  - {{name: body, match: {{not: "{head}.*"}}}}
modifiers:
  - {{name: no-decay, match: {{ndim: 1}}, weight_decay: 0}}
"""


# Muon for the hidden matrix, AdamW for the rest: one CombinedOptimizer (--mode fsdp2 runs it too).
MUON = """
version: 1
defaults: {lr: 0.01, weight_decay: 0.1}
optimizer: {type: AdamW}
optimizers:
  muon: {type: Muon}
rules:
  - {name: muon, match: {role: hidden, ndim: 2}, optimizer: muon, lr: 0.02}
  - {name: rest, fallback: true, weight_decay: 0.0}
"""


def model(muon: bool = False) -> nn.Module:
    torch.manual_seed(0)
    if muon:  # "1.weight" is the hidden matrix
        return nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 4))
    return nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 4))  # "0" and "2": same shapes


def fsdp2(accelerator: Any, plugin: Any) -> None:
    """Accelerate's FSDP2 path on the CPU, for this test only (the module docstring says why)."""
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    accelerator.state.fsdp_plugin = plugin
    # Each AcceleratorState() copies PartialState's fields over its own: set the type in both.
    PartialState().distributed_type = accelerator.state.distributed_type = DistributedType.FSDP


def prepared(accelerator: Any, head: str = "2", mult: int = 10, muon: bool = False) -> tuple[nn.Module, Any]:
    accelerator.free_memory()  # save_state/load_state handle every object prepared: this run's alone
    net = model(muon)
    optimizer, _ = lrrules.build(lrrules.loads(MUON if muon else RULES.format(head=head, mult=mult)), net)
    return accelerator.prepare(net, optimizer)  # type: ignore[no-any-return]


def train(accelerator: Any, net: nn.Module, optimizer: Any, steps: range) -> None:
    for step in steps:
        torch.manual_seed(100 + 10 * step + accelerator.process_index)  # each rank its own batch
        optimizer.zero_grad()
        accelerator.backward(net(torch.randn(2, 4)).square().mean())
        optimizer.step()


def params(net: nn.Module) -> dict[str, torch.Tensor]:
    full = {n.removeprefix("module."): getattr(p, "full_tensor", p.detach)() for n, p in net.named_parameters()}
    return {n: t.detach().clone() for n, t in full.items()}


def worker(rank: int, world: int, port: int, out: str, mode: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from accelerate import Accelerator, FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2) if mode == "fsdp2" else None
    accelerator = Accelerator(cpu=True, fsdp_plugin=plugin)
    result: dict[str, Any] = {"given": str(accelerator.distributed_type)}  # what Accelerate made of it
    if mode == "fsdp2":
        fsdp2(accelerator, plugin)
    ckpt = str(Path(out, "ckpt"))
    net, optimizer = prepared(accelerator)
    result["wrapped"] = [type(net).__name__, type(next(net.parameters())).__name__]
    train(accelerator, net, optimizer, range(2))
    accelerator.save_state(ckpt)
    train(accelerator, net, optimizer, range(2, 4))
    result["straight"] = params(net)
    result["saved"] = sorted(os.listdir(ckpt))

    net, optimizer = prepared(accelerator)
    accelerator.load_state(ckpt)               # optimizer.load_state_dict: lrrules' guard runs there
    train(accelerator, net, optimizer, range(2, 4))
    result["resumed"] = params(net)

    net, optimizer = prepared(accelerator, head="0")   # "0" and "2" trade groups: same sizes, other tensors
    try:
        accelerator.load_state(ckpt)
        result["refused"] = ""
    except lrrules.ResumeError as error:
        result["refused"] = str(error)

    net, optimizer = prepared(accelerator, mult=20)    # only the head's lr edited
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        accelerator.load_state(ckpt)
    result["edited_lrs"] = [g["lr"] for g in optimizer.param_groups]
    result["edited_warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    if mode == "fsdp2":
        result["muon"] = muon_resume(accelerator, str(Path(out, "muon")))
    torch.save(result, Path(out, f"rank{rank}.pt"))
    accelerator.wait_for_everyone()
    torch.distributed.destroy_process_group()


def muon_resume(accelerator: Any, ckpt: str) -> dict[str, dict[str, torch.Tensor]]:
    """Muon + AdamW from one file: the parameters straight through and resumed from the checkpoint."""
    net, optimizer = prepared(accelerator, muon=True)
    train(accelerator, net, optimizer, range(2))
    accelerator.save_state(ckpt)
    train(accelerator, net, optimizer, range(2, 4))
    straight = params(net)
    net, optimizer = prepared(accelerator, muon=True)
    accelerator.load_state(ckpt)
    train(accelerator, net, optimizer, range(2, 4))
    return {"straight": straight, "resumed": params(net)}


def main(out: Path, port: int = 29534, mode: str = "ddp") -> None:
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(worker, args=(2, port, str(out), mode), nprocs=2, join=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port", type=int, default=29534)
    parser.add_argument("--mode", choices=["ddp", "fsdp2"], default="ddp")
    args = parser.parse_args()
    main(args.out, args.port, args.mode)
