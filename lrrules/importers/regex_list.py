"""An ordered list of ``{pattern, lr/lr_mult, weight_decay/wd_mult, ...}``, the first match winning
(torchtitan's ParamGroupConfig, NeMo Automodel's ``param_group_overrides``, Megatron's
``overrides_config``), as order-free rules: each entry overrides the entries after it.

    lr: 3.0e-4
    weight_decay: 0.1
    optimizer: AdamW                      # optional; its options beside it under optimizer_options
    groups:                               # or param_group_overrides / overrides_config / param_groups
      - {pattern: 'lm_head', lr_mult: 10}       # a regex searched in the name (re.search)
      - {pattern: '(bias|norm)', weight_decay: 0}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import torch

from ..capture import num
from ..errors import UsageError, did_you_mean
from . import read_mapping

LISTS = ("groups", "param_group_overrides", "overrides_config", "param_groups")
ALIASES = {"wd_mult": "weight_decay_mult", "decay_mult": "weight_decay_mult"}
TOP = ("lr", "weight_decay", "optimizer", "optimizer_options", *LISTS)


def read(path: str) -> dict[str, Any]:
    """The list and its defaults from a YAML or JSON file."""
    return read_mapping(path, f"a mapping with lr and a list under one of {', '.join(LISTS)}")


def _entries(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    unknown = [k for k in config if k not in TOP]
    if unknown:
        raise UsageError(f"unknown key {unknown[0]!r}{did_you_mean(unknown[0], TOP)}; expected {', '.join(TOP)}")
    found = [k for k in LISTS if k in config]
    if len(found) != 1 or "lr" not in config:
        raise UsageError(f"expected lr and exactly one list under {' or '.join(LISTS)}")
    out = []
    for i, entry in enumerate(config[found[0]]):
        entry = {ALIASES.get(k, k): v for k, v in dict(entry).items()}
        if "pattern" not in entry:
            raise UsageError(f"{found[0]}[{i}]: no pattern")
        re.compile(entry["pattern"])
        out.append(entry)
    return out


def peer(config: Mapping[str, Any], model: torch.nn.Module) -> list[dict[str, Any]]:
    """The groups the peers' documented loop builds: each tensor goes with the first entry whose
    pattern ``re.search``-es its name; a tensor no entry matches keeps the defaults."""
    entries, base_wd = _entries(config), float(config.get("weight_decay", 0.0))
    groups: dict[int, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        i = next((i for i, e in enumerate(entries) if re.search(e["pattern"], name)), len(entries))
        if i not in groups:
            entry = entries[i] if i < len(entries) else {}
            settings = {k: v for k, v in entry.items() if k not in ("pattern", "lr_mult", "weight_decay_mult")}
            settings.setdefault("lr", float(config["lr"]) * entry.get("lr_mult", 1.0))
            settings.setdefault("weight_decay", base_wd * entry.get("weight_decay_mult", 1.0))
            groups[i] = {"params": [], **settings}
        groups[i]["params"].append(param)
    return [groups[i] for i in sorted(groups)]


def rules(config: Mapping[str, Any], model: torch.nn.Module | None = None) -> str:
    """The rule file (YAML text): one rule per entry, each overriding the next (the list's order).

    >>> text = rules({"lr": 1e-3, "groups": [{"pattern": "head", "lr_mult": 10}]})   # doctest: +SKIP
    """
    entries = _entries(config)
    out = ["# Imported from an ordered first-match list (torchtitan / NeMo Automodel / Megatron style).",
           "# The first entry whose pattern is found in a name decides; here each rule overrides the next,",
           "# so the order is kept without depending on the order of the file. Names no entry matches: defaults.",
           "version: 1", "defaults:", f"  lr: {num(float(config['lr']))}",
           f"  weight_decay: {num(float(config.get('weight_decay', 0.0)))}",
           *(f"  {k}: {num(v)}" for k, v in (config.get("optimizer_options") or {}).items()),
           f"optimizer: {{type: {config.get('optimizer', 'AdamW')}}}", "rules:"]
    for i, entry in enumerate(entries):
        fields = [f"name: entry-{i + 1}", f"match: {json.dumps({'regex': entry['pattern']})}"]
        for key in ("lr", "lr_mult", "weight_decay", "weight_decay_mult"):
            if key in entry:
                fields.append(f"{key}: {num(float(entry[key]))}")
        options = {k: v for k, v in entry.items() if k not in ("pattern", "lr", "lr_mult", "weight_decay",
                                                               "weight_decay_mult")}
        if options:
            fields.append("options: {" + ", ".join(f"{k}: {num(v)}" for k, v in options.items()) + "}")
        if i + 1 < len(entries):
            fields.append(f"overrides: [entry-{i + 2}]")
        out.append("  - {" + ", ".join(fields) + "}")
    out.append("  - {name: rest, fallback: true}")
    return "\n".join(out) + "\n"
