"""Axolotl's optimizer groups as a rule file: ``lr_groups`` (and ``embedding_lr``/``embedding_lr_scale``),
as Axolotl's ``create_optimizer_grouped_parameters`` builds them (axolotl is not installed here: its
loop, as its source reads, is :func:`peer`), or LoRA+ (``loraplus_lr_ratio``, ``loraplus_lr_embedding``)
on a peft LoRA model, as peft's own ``create_loraplus_optimizer`` builds them:

- the LoRA factors of an embedding (``lora_embedding_A``/``_B``): ``loraplus_lr_embedding``;
- ``lora_B`` and every 1-D tensor: ``learning_rate * loraplus_lr_ratio``, without decay where the
  name holds ``bias`` or an nn.LayerNorm holds it;
- the rest (``lora_A``, ``modules_to_save`` matrices): ``learning_rate``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import torch

from ..capture import num
from ..errors import UsageError
from . import read_mapping


def read(path: str) -> dict[str, Any]:
    """Axolotl's config (YAML): ``learning_rate``, ``loraplus_lr_ratio``, ``loraplus_lr_embedding``, ..."""
    data = read_mapping(path, "Axolotl's config, a mapping")
    if not ({"loraplus_lr_ratio", "lr_groups"} & set(data)):
        raise UsageError(f"{path}: neither loraplus_lr_ratio nor lr_groups (the optimizer settings imported)")
    return data


def _settings(config: Mapping[str, Any]) -> tuple[float, float, float, float, float]:
    lr, ratio = float(config["learning_rate"]), float(config["loraplus_lr_ratio"])
    embedding = float(config.get("loraplus_lr_embedding") or 1e-6)
    return lr, ratio, embedding, float(config.get("loraplus_weight_decay") or 0.0), float(config.get("adam_epsilon", 1e-8))


EMBEDDINGS = {"any": [{"glob": "*modules_to_save.default.weight"}, {"regex": ["embed_tokens", "lm_head"]}]}


def _groups_peer(config: Mapping[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    """Axolotl's loop: embeddings first, then a decay parameter goes to the first lr_groups module
    (in the order listed) found in its name; no-decay parameters keep the base lr."""
    from transformers import Trainer

    lr, wd = float(config["learning_rate"]), float(config.get("weight_decay") or 0.0)
    decay = set(Trainer.get_decay_parameter_names(None, model))  # type: ignore[arg-type]  # uses no self
    lookup = {m: (g["name"], float(g["lr"])) for g in config.get("lr_groups") or [] for m in g["modules"]}
    embedding_lr = lr * float(config["embedding_lr_scale"]) if config.get("embedding_lr_scale") else float(
        config.get("embedding_lr") or lr)
    groups: dict[str, dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith("modules_to_save.default.weight") or "embed_tokens" in name or "lm_head" in name:
            key, settings = "embeddings", {"lr": embedding_lr, "weight_decay": 0.0}
        elif name in decay:
            found = [lookup[m] for m in lookup if m in name]
            key, settings = (found[0][0], {"lr": found[0][1], "weight_decay": wd}) if found else (
                "decay", {"lr": lr, "weight_decay": wd})
        else:
            key, settings = "no_decay", {"lr": lr, "weight_decay": 0.0}
        groups.setdefault(key, {"params": [], **settings})["params"].append(p)
    return torch.optim.AdamW(list(groups.values()), lr=lr)


def _groups_rules(config: Mapping[str, Any]) -> str:
    from .hf import NO_DECAY_PATTERNS

    lr, wd = float(config["learning_rate"]), float(config.get("weight_decay") or 0.0)
    modules = list(dict.fromkeys(m for g in config.get("lr_groups") or [] for m in g["modules"]))
    lrs = {m: float(g["lr"]) for g in reversed(config.get("lr_groups") or []) for m in g["modules"]}
    names = [f"group-{i + 1}" for i in range(len(modules))]
    embedding = (f"lr_mult: {num(float(config['embedding_lr_scale']))}" if config.get("embedding_lr_scale")
                 else f"lr: {num(float(config.get('embedding_lr') or lr))}")
    no_decay = {"any": [{"module": "LayerNorm"}, {"regex": [f"(?i){p}" for p in NO_DECAY_PATTERNS]}]}
    out = ["# Imported from Axolotl's lr_groups (create_optimizer_grouped_parameters).", "version: 1", "defaults:",
           f"  lr: {num(lr)}", f"  weight_decay: {num(wd)}", "optimizer: {type: AdamW}", "rules:",
           "  # Axolotl tests embeddings first: names with embed_tokens or lm_head, and modules_to_save weights",
           f"  - {{name: embeddings, match: {json.dumps(EMBEDDINGS)}, {embedding}, weight_decay: 0"
           + (f", overrides: [{names[0]}]}}" if names else "}"),
           "  # then each lr_groups module, in the order listed, as a substring of the name; the first found",
           "  # decides, and only for tensors that decay: a bias or norm in a group keeps the base lr"]
    for i, module in enumerate(modules):
        match = {"regex": re.escape(module), "not": no_decay}
        out.append(f"  - {{name: {names[i]}, match: {json.dumps(match)}, lr: {num(lrs[module])}"
                   + (f", overrides: [{names[i + 1]}]}}" if i + 1 < len(names) else "}") + f"   # {module!r}")
    out += ["  - {name: rest, fallback: true}", "modifiers:",
            f"  - {{name: no-decay, match: {json.dumps(no_decay)}, weight_decay: 0}}   # the Trainer's no-decay names"]
    return "\n".join(out) + "\n"


def peer(config: Mapping[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    """Axolotl's groups for ``model``: its lr_groups loop, or peft's own LoRA+ optimizer (``peft.optimizers.create_loraplus_optimizer``, AdamW) for ``model``."""
    from peft.optimizers import create_loraplus_optimizer

    if "loraplus_lr_ratio" not in config:
        return _groups_peer(config, model)
    lr, ratio, embedding, wd, eps = _settings(config)
    wrapped: Any = model  # peft's annotation says PeftModel; any LoRA-wrapped module works
    optimizer: torch.optim.Optimizer = create_loraplus_optimizer(
        wrapped, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=ratio, loraplus_lr_embedding=embedding,
        loraplus_weight_decay=wd, eps=eps)
    return optimizer


def rules(config: Mapping[str, Any], model: torch.nn.Module | None = None) -> str:
    """The rule file (YAML text) for LoRA+ or lr_groups.

    >>> text = rules({"learning_rate": 2e-4, "loraplus_lr_ratio": 16})   # doctest: +SKIP
    """
    if "loraplus_lr_ratio" not in config:
        return _groups_rules(config)
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
