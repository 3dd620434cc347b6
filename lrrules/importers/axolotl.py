"""Axolotl's LoRA+ settings (``loraplus_lr_ratio``, ``loraplus_lr_embedding``) as a rule file, for a
peft LoRA model; the groups are peft's ``create_loraplus_optimizer``'s:

- the LoRA factors of an embedding (``lora_embedding_A``/``_B``): ``loraplus_lr_embedding``;
- ``lora_B`` and every 1-D tensor: ``learning_rate * loraplus_lr_ratio``, without decay where the
  name holds ``bias`` or an nn.LayerNorm holds it;
- the rest (``lora_A``, ``modules_to_save`` matrices): ``learning_rate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from ..capture import num
from ..errors import UsageError


def read(path: str) -> dict[str, Any]:
    """Axolotl's config (YAML): ``learning_rate``, ``loraplus_lr_ratio``, ``loraplus_lr_embedding``, ..."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or "loraplus_lr_ratio" not in data:
        raise UsageError(f"{path}: no loraplus_lr_ratio (only Axolotl's LoRA+ settings are imported)")
    return data


def _settings(config: Mapping[str, Any]) -> tuple[float, float, float, float, float]:
    lr, ratio = float(config["learning_rate"]), float(config["loraplus_lr_ratio"])
    embedding = float(config.get("loraplus_lr_embedding") or 1e-6)
    return lr, ratio, embedding, float(config.get("loraplus_weight_decay") or 0.0), float(config.get("adam_epsilon", 1e-8))


def peer(config: Mapping[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    """peft's own LoRA+ optimizer (``peft.optimizers.create_loraplus_optimizer``, AdamW) for ``model``."""
    from peft.optimizers import create_loraplus_optimizer

    lr, ratio, embedding, wd, eps = _settings(config)
    wrapped: Any = model  # peft's annotation says PeftModel; any LoRA-wrapped module works
    optimizer: torch.optim.Optimizer = create_loraplus_optimizer(
        wrapped, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=ratio, loraplus_lr_embedding=embedding,
        loraplus_weight_decay=wd, eps=eps)
    return optimizer


def rules(config: Mapping[str, Any], model: torch.nn.Module | None = None) -> str:
    """The rule file (YAML text) for LoRA+.

    >>> text = rules({"learning_rate": 2e-4, "loraplus_lr_ratio": 16})   # doctest: +SKIP
    """
    lr, ratio, embedding, wd, eps = _settings(config)
    return "\n".join([
        "# Imported from Axolotl's LoRA+ settings (peft.optimizers.create_loraplus_optimizer).",
        "# LoRA+ sets every group's weight decay to loraplus_weight_decay (default 0): the optimizer's own",
        "# weight_decay never applies.",
        "version: 1", "defaults:", f"  lr: {num(lr)}", f"  weight_decay: {num(wd)}", f"  eps: {num(eps)}",
        "optimizer: {type: AdamW}", "rules:",
        "  # peft tells an embedding's factors by the tuner layer's class; only that layer names them lora_embedding_",
        f"  - {{name: embedding, match: {{regex: '\\.lora_embedding_[AB]\\.'}}, lr: {num(embedding)}}}   "
        "# loraplus_lr_embedding",
        f"  - {{name: lora-b, match: {{any: [{{regex: 'lora_B'}}, {{ndim: 1}}]}}, lr_mult: {num(ratio)}}}   "
        "# loraplus_lr_ratio: lora_B and every 1-D tensor",
        "  - {name: lora-a, fallback: true}   # lora_A and the rest: learning_rate",
        "modifiers:",
        "  - {name: no-decay, match: {all: [{any: [{regex: 'lora_B'}, {ndim: 1}]}, "
        "{any: [{regex: bias}, {module: LayerNorm}]}, {not: {regex: '\\.lora_embedding_[AB]\\.'}}]}, weight_decay: 0}"
        "   # lora_B group: no decay on bias names and LayerNorms",
    ]) + "\n"
