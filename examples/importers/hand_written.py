"""A hand-written optimizer, as training scripts have them: `lrrules capture` turns it into a rule file.

    lrrules capture examples/importers/hand_written.py:make_optimizer --model resnet18 --num-classes 3
"""

from __future__ import annotations

import torch


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The backbone at 1e-4, the new head at 1e-3, no weight decay on biases and BatchNorm weights."""
    groups: list[dict[str, object]] = []
    for name, param in model.named_parameters():
        lr = 1e-3 if name.startswith("fc.") else 1e-4
        groups.append({"params": [param], "lr": lr, "weight_decay": 0.0 if param.ndim == 1 else 0.05})
    return torch.optim.AdamW(groups)
