"""One rank of tests/test_distributed_fsdp.py: every check of resolve-once-bind-anywhere, DTensor
groups, DCP checkpoints and phases on one gloo group (one spawn is cheaper than many). Each check
writes what it saw under its name; a check that raises records the error instead of ending the rest."""

from __future__ import annotations

import json
import os
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)

import lrrules
from lrrules.distributed import bind

RULES = """
version: 1
defaults: {lr: 0.01, weight_decay: 0.1}
optimizer: {type: AdamW}
optimizers:
  muon: {type: Muon}
rules:
  - {name: muon, match: {role: hidden, ndim: 2}, optimizer: muon, lr: 0.02}
  - {name: decay, match: ["embed.*", "head.weight"], options: {foreach: true}}
  - {name: rest, fallback: true, weight_decay: 0.0, options: {foreach: true}}
"""
# The same tensors, another grouping (the norms join 'decay'): a state saved under RULES is foreign here.
OTHER = RULES.replace('"head.weight"]', '"head.weight", "blocks.*.norm.weight"]')
PHASED = """
version: 1
defaults: {lr: 0.05, weight_decay: 0.1}
optimizer: {type: AdamW}
rules:
  - {name: all, match: "*", options: {foreach: true}}
phases:
  - {from_step: 0, freeze: "blocks.0.*"}
  - {from_step: 2, unfreeze: "blocks.0.*"}
"""


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 8)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc(self.norm(h)).relu()


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, 8)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)


def made(shard: bool = True) -> Net:
    torch.manual_seed(0)  # the same weights on every rank, and in every run
    model = Net()
    if shard:
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:
            fully_shard(block)  # embed and head stay plain tensors: groups mix both kinds
    return model


def whole_plan(rules: str) -> lrrules.Plan:
    with torch.device("meta"):
        return lrrules.resolve(lrrules.loads(rules), Net())


def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: range, plan: Any = None) -> None:
    for step in steps:
        if plan is not None:
            plan.apply_phase(step=step)
        # The same batch on every rank: the tensors left unsharded are not reduced, and stay equal so.
        torch.manual_seed(1000 * step)
        optimizer.zero_grad()
        model(torch.randint(0, 16, (4, 3))).square().mean().backward()
        optimizer.step()


def full(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone() for n, p in model.named_parameters()}


def fsdp2_dcp(tmp: Path) -> dict[str, Any]:
    """FSDP2 + Muon/AdamW from one file: groups, training, DCP save/load, bit-exact resume, the guard."""
    rules = lrrules.loads(RULES)
    out: dict[str, Any] = {}
    for flatten in (True, False):
        options = StateDictOptions(flatten_optimizer_state_dict=flatten)
        model = made()
        optimizer, plan = lrrules.build(rules, model, plan=whole_plan(RULES))
        out[f"groups_{flatten}"] = [[g["name"], sorted({type(p).__name__ for p in g["params"]})] for g in optimizer.param_groups]
        train(model, optimizer, range(2))
        folder = tmp / f"ckpt-{flatten}"
        dcp.save({"model": get_model_state_dict(model),
                  "optim": get_optimizer_state_dict(model, optimizer, options=options)}, checkpoint_id=folder)
        train(model, optimizer, range(2, 4))
        uninterrupted = full(model)

        model = made()
        optimizer, plan = lrrules.build(rules, model, plan=whole_plan(RULES))
        state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer, options=options)}
        dcp.load(state, checkpoint_id=folder)
        set_model_state_dict(model, state["model"])
        set_optimizer_state_dict(model, optimizer, state["optim"], options=options)
        train(model, optimizer, range(2, 4))
        resumed = full(model)
        out[f"bit_exact_{flatten}"] = sorted(n for n in uninterrupted if not torch.equal(uninterrupted[n], resumed[n]))
        out[f"moved_{flatten}"] = sum(not torch.equal(a, b) for a, b in zip(uninterrupted.values(), full(made(False)).values()))

        model = made()
        optimizer, plan = lrrules.build(lrrules.loads(OTHER), model, plan=whole_plan(OTHER))
        state = {"optim": get_optimizer_state_dict(model, optimizer, options=options)}
        try:
            dcp.load(state, checkpoint_id=folder)
            set_optimizer_state_dict(model, optimizer, state["optim"], options=options)
            out[f"foreign_{flatten}"] = "loaded"
        except BaseException as exc:  # DCP's CheckpointException is a BaseException
            out[f"foreign_{flatten}"] = f"{type(exc).__name__}: {str(exc)[-300:]}"
        model = made()
        optimizer, plan = lrrules.build(rules.model_copy(update={"defaults": rules.defaults.model_copy(
            update={"lr": 0.03})}), model, plan=whole_plan(RULES.replace("lr: 0.01", "lr: 0.03")))
        out[f"edited_groups_{flatten}"] = [g["name"] for g in optimizer.param_groups]
        state = {"optim": get_optimizer_state_dict(model, optimizer, options=options)}
        dcp.load(state, checkpoint_id=folder)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            set_optimizer_state_dict(model, optimizer, state["optim"], options=options)
        out[f"edited_lr_{flatten}"] = [str(w.message) for w in seen if "ResumeWarning" in type(w.message).__name__]
    return out


def phases(tmp: Path) -> dict[str, Any]:
    """A phase-frozen tensor stays exactly still under DDP and FSDP2 (AdamW, weight decay on)."""
    rules = lrrules.loads(PHASED)
    out: dict[str, Any] = {}
    for mode in ("ddp", "fsdp2"):
        model = made(shard=mode == "fsdp2")
        if mode == "ddp":
            model = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)  # type: ignore[assignment]
        optimizer, plan = lrrules.build(rules, model)
        before = full(model)
        train(model, optimizer, range(2), plan)
        after = full(model)
        out[mode] = {n.removeprefix("module."): torch.equal(before[n], after[n]) for n in before}
        train(model, optimizer, range(2, 3), plan)
        out[mode + "_unfrozen"] = {n.removeprefix("module."): torch.equal(after[n], t) for n, t in full(model).items()}
    # frozen before DDP(...) and unfrozen by a later phase: DDP never reduces it
    model = made(shard=False)
    lrrules.resolve(rules, model).apply_phase(step=0)
    ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    optimizer, plan = lrrules.build(rules, ddp)
    try:
        plan.apply_phase(step=2)
        out["unreduced"] = "unfrozen"
    except lrrules.LrrulesError as exc:
        out["unreduced"] = f"{type(exc).__name__}: {exc}"
    # resolved before fully_shard: the plan's tensors are dead
    model = made(shard=False)
    stale = lrrules.resolve(rules, model)
    from torch.distributed.fsdp import fully_shard

    fully_shard(model)
    try:
        stale.apply_phase(step=0)
        out["stale"] = "applied"
    except lrrules.LrrulesError as exc:
        out["stale"] = f"{type(exc).__name__}: {exc}"
    return out


def fsdp1(tmp: Path) -> dict[str, Any]:
    """FSDP1: original shapes from the flat parameters (use_orig_params=True), a clear refusal otherwise."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    rules = lrrules.loads(PHASED.split("phases:")[0])
    plan = whole_plan(PHASED.split("phases:")[0])
    out: dict[str, Any] = {}
    wrapped = FSDP(made(shard=False), use_orig_params=True)
    out["local_shapes"] = [list(p.shape) for p in wrapped.parameters()][:3]
    bound = bind(plan, wrapped)
    out["bound"] = {a.name: list(a.shape) for a in bound.params}
    out["whole"] = {a.name: list(a.shape) for a in plan.params}
    optimizer, _ = lrrules.build(rules, wrapped, plan=plan)
    out["grouped"] = sum(len(g["params"]) for g in optimizer.param_groups)
    for name, call in (("build_alone", lambda: lrrules.build(rules, wrapped)),
                       ("flat", lambda: bind(plan, FSDP(made(shard=False), use_orig_params=False)))):
        try:
            call()
            out[name] = "accepted"
        except lrrules.LrrulesError as exc:
            out[name] = f"{type(exc).__name__}: {exc}"
    return out


CHECKS: dict[str, Callable[[Path], dict[str, Any]]] = {"fsdp2_dcp": fsdp2_dcp, "phases": phases}


def run(rank: int, world: int, store: str, out: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    results: dict[str, Any] = {}
    try:
        for name, check in CHECKS.items():
            try:
                results[name] = check(Path(out))
            except Exception:
                results[name] = {"error": traceback.format_exc()[-1500:]}
            dist.barrier()
        Path(out, f"checks{rank}.json").write_text(json.dumps(results))
        dist.barrier()
    finally:
        dist.destroy_process_group()
