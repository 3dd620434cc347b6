"""timm: create_optimizer_v2 fed lrrules' groups, with timm's cosine scheduler (which reads lr_scale).

    python examples/integrations/timm_optimizer.py --steps 20

timm's schedulers multiply each group's base lr by its ``lr_scale``, so the groups are taken in
timm's convention: ``plan.param_groups(lr_scale=True)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import timm
import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import nn

import lrrules

RULES = Path(__file__).parents[1] / "vit-timm-layer-decay.yaml"


def run(steps: int = 20) -> dict[str, Any]:
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32, patch_size=8)
    rules = lrrules.load(RULES)
    plan = lrrules.resolve(rules, model)
    optimizer = create_optimizer_v2(plan.param_groups(lr_scale=True), opt="adamw", lr=rules.defaults.lr,
                                    weight_decay=rules.defaults.weight_decay)
    scheduler = CosineLRScheduler(optimizer, t_initial=2 * steps, warmup_t=2, warmup_lr_init=1e-6, t_in_epochs=False)
    for step in range(steps):
        x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step_update(step + 1)
    return {"planned": plan.group_lrs(), "final": [g["lr"] for g in optimizer.param_groups], "loss": loss.item(),
            "optimizer": type(optimizer).__name__}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    result = run(parser.parse_args().steps)
    print(f"{result['optimizer']}: loss {result['loss']:.4f}; {len(result['final'])} groups")
