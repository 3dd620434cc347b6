"""DeepSpeed ZeRO-1/2 on the CPU with lrrules' groups, and a guarded resume, on two gloo ranks.

    python examples/engines/deepspeed_zero.py --out /tmp/ds

DeepSpeed's CPU accelerator builds its shared-memory all-reduce op with g++ the first time (about
ten minutes); the build is kept in TORCH_EXTENSIONS_DIR (default: the venv's torch_extensions).
Writes what each step did to --out (tests/test_engine_deepspeed.py checks it).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp
from torch import nn

import lrrules
from lrrules.engines import deepspeed_client_state, deepspeed_groups, load_deepspeed_checkpoint

RULES = """
version: 1
defaults: {{lr: 0.01, weight_decay: 0.1}}
optimizer: {{type: {optimizer}}}
rules:
  - {{name: head, match: "{head}.*", lr_mult: 10}}
  - {{name: body, match: {{not: "{head}.*"}}}}
modifiers:
  - {{name: no-decay, match: {{ndim: 1}}, weight_decay: 0}}
"""
LOCK_STALE_S = 30 * 60  # longer than the op's build takes: an older lock was left by a killed build


def ops_cache() -> Path:
    """Where the compiled op is kept; a build lock a killed build left behind is removed."""
    cache = Path(os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions")))
    for lock in cache.glob("*/lock"):
        if time.time() - lock.stat().st_mtime > LOCK_STALE_S:
            lock.unlink(missing_ok=True)
    return cache


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 4))  # "0" and "2": same shapes


def config(stage: int, **extra: Any) -> dict[str, Any]:
    # gradient_clipping 0: plain steps, so each tensor's move is its lr times its gradient
    return {"train_micro_batch_size_per_gpu": 2, "gradient_clipping": 0.0, "zero_optimization": {"stage": stage}, **extra}


def train(engine: Any, steps: range) -> None:
    for step in steps:
        torch.manual_seed(100 + step)  # the same batch on both ranks: each step is one plain step
        loss = engine(torch.randn(2, 4)).square().mean()
        engine.backward(loss)
        engine.step()


def sgd_step(stage: int) -> dict[str, Any]:
    """One ZeRO step of lrrules' SGD: each tensor before, after, its gradient, and the plan's settings."""
    import deepspeed

    net = model()
    optimizer, plan = lrrules.build(lrrules.loads(RULES.format(optimizer="SGD", head="2")), net)
    twin = copy.deepcopy(net)
    # ZeRO wraps any torch optimizer; it asks to be told so for those it has not tested (SGD)
    engine, *_ = deepspeed.initialize(model=net, optimizer=optimizer,
                                      config=config(stage, zero_allow_untested_optimizer=True))
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    torch.manual_seed(100)
    twin(torch.randn(2, 4)).square().mean().backward()
    train(engine, range(1))
    return {"before": before, "after": {n: p.detach().clone() for n, p in net.named_parameters()},
            "grad": {n: p.grad for n, p in twin.named_parameters()},
            "settings": {a.name: (a.lr, a.weight_decay) for a in plan.params}}


def resume(out: Path) -> dict[str, Any]:
    """Two steps, a checkpoint, two more; then a fresh engine loads it and takes the same two."""
    import deepspeed

    rules = lrrules.loads(RULES.format(optimizer="AdamW", head="2"))
    net = model()
    optimizer, plan = lrrules.build(rules, net)
    engine, *_ = deepspeed.initialize(model=net, optimizer=optimizer, config=config(2))
    train(engine, range(2))
    engine.save_checkpoint(str(out / "ckpt"), tag="step2", client_state=deepspeed_client_state(plan))
    train(engine, range(2, 4))
    straight = {n: p.detach().clone() for n, p in net.named_parameters()}

    net = model()
    optimizer, plan = lrrules.build(rules, net)
    engine, *_ = deepspeed.initialize(model=net, optimizer=optimizer, config=config(2))
    report = load_deepspeed_checkpoint(engine, str(out / "ckpt"), plan, tag="step2")
    train(engine, range(2, 4))
    resumed = {n: p.detach().clone() for n, p in net.named_parameters()}

    # The edit a layout guard exists for: "0" and "2" trade groups, their flat moments have equal sizes.
    net = model()
    optimizer, plan = lrrules.build(lrrules.loads(RULES.format(optimizer="AdamW", head="0")), net)
    engine, *_ = deepspeed.initialize(model=net, optimizer=optimizer, config=config(2))
    try:
        load_deepspeed_checkpoint(engine, str(out / "ckpt"), plan, tag="step2")
        refused = ""
    except lrrules.ResumeError as error:
        refused = str(error)

    net = model()  # only the head's lr edited: the checkpoint's lr stays, and the change is reported
    optimizer, plan = lrrules.build(lrrules.loads(RULES.format(optimizer="AdamW", head="2").replace("10", "20")), net)
    engine, *_ = deepspeed.initialize(model=net, optimizer=optimizer, config=config(2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        edited = load_deepspeed_checkpoint(engine, str(out / "ckpt"), plan, tag="step2")
    return {"straight": straight, "resumed": resumed, "report": str(report), "refused": refused,
            "edited": str(edited), "edited_lrs": [g["lr"] for g in engine.optimizer.param_groups],
            "edited_warnings": [f"{w.category.__name__}: {w.message}" for w in caught]}


def groups_from_config() -> list[Any]:
    """DeepSpeed builds the optimizer from its config over lrrules' groups: each group's lr and decay."""
    import deepspeed

    net = model()
    plan = lrrules.resolve(lrrules.loads(RULES.format(optimizer="AdamW", head="2")), net)
    adamw = {"type": "AdamW", "params": {"lr": 1.0, "weight_decay": 0.5, "torch_adam": True}}
    engine, *_ = deepspeed.initialize(model=net, model_parameters=deepspeed_groups(plan),
                                      config=config(2, optimizer=adamw))
    return [[g["lr"], g["weight_decay"]] for g in engine.optimizer.param_groups]


def phases_refused() -> str:
    text = RULES.format(optimizer="AdamW", head="2") + "phases:\n  - {from_epoch: 1, freeze: '0.*'}\n"
    try:
        deepspeed_groups(lrrules.resolve(lrrules.loads(text), model()))
    except lrrules.LrrulesError as error:
        return str(error)
    return ""


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")
    result = {f"sgd_stage{stage}": sgd_step(stage) for stage in (1, 2)}
    result.update(resume(Path(out)), config_groups=groups_from_config(), phases=phases_refused())
    torch.save(result, Path(out, f"rank{rank}.pt"))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def main(out: Path, port: int = 29533) -> None:
    ops_cache()
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(worker, args=(2, port, str(out)), nprocs=2, join=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port", type=int, default=29533)
    args = parser.parse_args()
    main(args.out, args.port)
