"""A plain PyTorch loop: lrrules.build (the optimizer and its plan) and a torch scheduler (OneCycleLR).

    python examples/integrations/plain_loop.py --steps 20

timm resnet18 with random weights on random data: nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

import lrrules

RULES = Path(__file__).parents[1] / "resnet18-discriminative.yaml"


def run(steps: int = 20) -> dict[str, Any]:
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=2)
    rules = lrrules.load(RULES)
    optimizer, plan = lrrules.build(rules, model)          # freezes the stem, groups the rest
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=plan.group_lrs(), total_steps=steps)
    for _ in range(steps):
        x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 2, (4,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return {"planned": plan.group_lrs(), "final": [g["lr"] for g in optimizer.param_groups], "loss": loss.item()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    result = run(parser.parse_args().steps)
    print(f"loss {result['loss']:.4f}; lr per group at the end: {[f'{lr:.2e}' for lr in result['final']]}")
