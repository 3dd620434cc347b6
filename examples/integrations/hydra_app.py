"""Hydra: a rule file embedded in a Hydra config, and the optimizer made by
``hydra.utils.instantiate`` (``_target_: lrrules.build_optimizer``) with the model passed in.

    python examples/integrations/hydra_app.py              # the config in hydra/config.yaml
    python examples/integrations/hydra_app.py lr=1e-3 decay=0.5

Hydra's compose API reads the config (no Hydra run directory, no network); every interpolation is
resolved when the rule file is read, so the file lrrules checks is the one the run uses.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import timm
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

HERE = Path(__file__).parent


def run(overrides: list[str] | None = None) -> dict[str, Any]:
    with initialize_config_dir(config_dir=str(HERE / "hydra"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides or [])
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, depth=3, img_size=32,
                              patch_size=8)
    optimizer = instantiate(cfg.optimizer, model=model)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    losses = []
    for _ in range(cfg.steps):
        loss: torch.Tensor = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return {"lrs": sorted({g["lr"] for g in optimizer.param_groups}), "losses": losses, "base_lr": cfg.lr}


if __name__ == "__main__":
    result = run(sys.argv[1:])
    print(f"{len(result['lrs'])} distinct lrs from {result['lrs'][0]:.3g} to {result['lrs'][-1]:.3g}; "
          f"loss {result['losses'][0]:.3f} -> {result['losses'][-1]:.3f}")
