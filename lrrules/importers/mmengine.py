"""MMEngine's ``optim_wrapper`` (``DefaultOptimWrapperConstructor`` and its ``paramwise_cfg``) as a rule file.

MMEngine decides each tensor in one pass (``add_params``): the first ``custom_keys`` key, longest
first, that is a substring of ``"{module path}.{tensor}"`` sets its lr and decay; only a tensor no
key matches gets the bias, norm, depthwise and flat multipliers, in that order of precedence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import torch

from ..capture import constructor_defaults, glob_escape, num
from ..errors import UsageError, did_you_mean
from ..optim import optimizer_class

FLAGS = ("custom_keys", "bias_lr_mult", "bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult",
         "flat_decay_mult", "bypass_duplicate", "dcn_offset_lr_mult")
#: MMEngine's ``is_norm``: isinstance of these torch classes (the module matcher sees base classes too).
NORMS = {"module": ["_BatchNorm", "_InstanceNorm", "GroupNorm", "LayerNorm"]}
BIAS = {"regex": r"(?:^|\.)bias$"}


def read(path: str) -> dict[str, Any]:
    """The ``optim_wrapper`` of an MMEngine config file (Python, YAML or JSON, read by MMEngine)."""
    from mmengine.config import Config

    cfg = Config.fromfile(path)
    wrapper = cfg.get("optim_wrapper") or {"optimizer": cfg.get("optimizer"), "paramwise_cfg": cfg.get("paramwise_cfg")}
    wrapper = dict(wrapper.to_dict() if hasattr(wrapper, "to_dict") else wrapper)
    if not wrapper.get("optimizer"):
        raise UsageError(f"{path}: no optim_wrapper (nor optimizer) in the config")
    optimizer = dict(wrapper["optimizer"])
    if "paramwise_cfg" in optimizer:  # MMCV's older configs keep it inside the optimizer
        wrapper["paramwise_cfg"] = optimizer.pop("paramwise_cfg")
    return {**wrapper, "optimizer": optimizer}


def peer(config: Mapping[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    """MMEngine's own optimizer for ``model``, made by its DefaultOptimWrapperConstructor."""
    from mmengine.logging import MMLogger
    from mmengine.optim import DefaultOptimWrapperConstructor

    wrapper = {"type": "OptimWrapper", "optimizer": config["optimizer"]}  # AMP, clipping: nothing of the groups
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel("WARNING")  # its INFO line per tensor and setting would bury the comparison
    try:
        made = DefaultOptimWrapperConstructor(wrapper, config.get("paramwise_cfg"))(model)
    finally:
        logger.setLevel(level)
    optimizer: torch.optim.Optimizer = made.optimizer
    return optimizer


def _key_match(key: str) -> dict[str, Any]:
    """Where MMEngine's ``key in f"{prefix}.{name}"`` holds: a top-level tensor is seen as ``.name``."""
    ways = [re.escape(key)]
    if key.startswith(".") and "." not in key[1:]:
        ways.append(f"^{re.escape(key[1:])}[^.]*$")
    return {"regex": ways}


def rules(config: Mapping[str, Any], model: torch.nn.Module | None = None) -> str:
    """The rule file (YAML text, with MMEngine's quirks named in comments) for an ``optim_wrapper``.

    >>> text = rules({"optimizer": {"type": "SGD", "lr": 0.1}, "paramwise_cfg": {"bias_lr_mult": 2}})  # doctest: +SKIP
    """
    if config.get("constructor", "DefaultOptimWrapperConstructor") != "DefaultOptimWrapperConstructor":
        raise UsageError(f"constructor {config['constructor']!r}: only MMEngine's DefaultOptimWrapperConstructor "
                         "is imported (a project's own constructor is code, not configuration)")
    optimizer = dict(config["optimizer"])
    has_wd = "weight_decay" in optimizer
    kind, lr, wd = optimizer.pop("type"), optimizer.pop("lr"), optimizer.pop("weight_decay", None)
    cfg = dict(config.get("paramwise_cfg") or {})
    unknown = [k for k in cfg if k not in FLAGS]
    if unknown:
        raise UsageError(f"paramwise_cfg: unknown key {unknown[0]!r}{did_you_mean(unknown[0], FLAGS)}; MMEngine reads "
                         + ", ".join(FLAGS))
    decays = [k for k in ("bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult") if k in cfg] + [
        f"custom_keys[{k!r}].decay_mult" for k, v in (cfg.get("custom_keys") or {}).items() if "decay_mult" in v]
    if decays and not has_wd:
        raise UsageError(f"paramwise_cfg sets {decays[0]} but the optimizer no weight_decay: MMEngine refuses that "
                         "('base_wd should not be None'); set the optimizer's weight_decay")
    out = ["# Imported from an MMEngine optim_wrapper (DefaultOptimWrapperConstructor).", "version: 1", "defaults:",
           f"  lr: {num(float(lr))}"]
    if not has_wd:
        wd = constructor_defaults(optimizer_class(kind)).get("weight_decay", 0.0)
        out.append(f"  weight_decay: {num(wd)}   # the optimizer's own default: the config sets none, so MMEngine "
                   "applies no decay multiplier (decay_mult, norm_decay_mult, ...)")
    else:
        out.append(f"  weight_decay: {num(float(wd))}")
    out += [f"  {k}: {num(v)}" for k, v in optimizer.items()]
    out += [f"optimizer: {{type: {kind}}}", "rules:"]
    keys = sorted(sorted(cfg.get("custom_keys") or {}), key=len, reverse=True)
    if keys:
        out.append("  # custom_keys: MMEngine tries the keys longest first (ties in alphabetical order) as substrings"
                   " of the name; the first that matches decides. Each rule overrides the next: that order.")
    later = _later_names(model) if cfg.get("bypass_duplicate") else []
    if later:
        out.append("  # bypass_duplicate: MMEngine judges a tied tensor by the first name it meets and skips the others;"
                   " lrrules would match any name, so every entry leaves the later names out")
    for i, key in enumerate(keys):
        out += _custom_rule(i, key, dict(cfg["custom_keys"][key]), has_wd, keys, later)
    out += ["  - {name: rest, fallback: true}", "modifiers:" if _has_flags(cfg, config) else ""]
    out += _flag_modifiers(cfg, [_key_match(k) for k in keys], has_wd, later)
    if cfg.get("dcn_offset_lr_mult") is not None:
        out.append("# dcn_offset_lr_mult: applies to mmcv's deformable convolutions only; none is here (mmcv-full absent)")
    return "\n".join(line for line in out if line) + "\n"


def _later_names(model: torch.nn.Module | None) -> list[dict[str, Any]]:
    """``[{not: later names}]``: the names of tied tensors after their first, which MMEngine skips."""
    from ..params import collect

    names = [glob_escape(a) for info in collect(model)[0] for a in info.aliases] if model is not None else []
    return [{"not": {"glob": names}}] if names else []


def _custom_rule(i: int, key: str, entry: dict[str, Any], has_wd: bool, keys: list[str],
                 later: list[dict[str, Any]]) -> list[str]:
    match = {"all": [_key_match(key), *later]} if later else _key_match(key)
    lines = [f"  - name: {_name(i, keys)}   # custom_keys[{key!r}]", f"    match: {json.dumps(match)}"]
    lr_mult, decay_mult = entry.pop("lr_mult", 1.0), entry.pop("decay_mult", 1.0)
    if "lr" in entry:
        lines.append(f"    lr: {num(float(entry.pop('lr')))}   # an 'lr' of the key replaces base lr * lr_mult")
    elif lr_mult != 1:
        lines.append(f"    lr_mult: {num(float(lr_mult))}")
    if "weight_decay" in entry:
        lines.append(f"    weight_decay: {num(float(entry.pop('weight_decay')))}")
    elif has_wd and decay_mult != 1:
        lines.append(f"    weight_decay_mult: {num(float(decay_mult))}")
    if entry:
        lines.append("    options: {" + ", ".join(f"{k}: {num(v)}" for k, v in entry.items()) + "}")
    if i + 1 < len(keys):
        lines.append(f"    overrides: [{_name(i + 1, keys)}]")
    return lines


def _name(i: int, keys: list[str]) -> str:
    """The rule of ``keys[i]``, named after the key where that is a plain word no other key shares."""
    words = [re.sub(r"[^\w.-]+", "-", k).strip("-.") for k in keys]
    word = words[i]
    return f"key-{word}" if word and words.count(word) == 1 else f"key-{i + 1}"


def _has_flags(cfg: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    return cfg.get("bias_lr_mult") is not None or ("weight_decay" in config["optimizer"] and any(
        cfg.get(k) is not None for k in ("bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult", "flat_decay_mult")))


def _flag_modifiers(cfg: Mapping[str, Any], custom: list[dict[str, Any]], has_wd: bool,
                    later: list[dict[str, Any]]) -> list[str]:
    """The flags, for tensors no custom key matches (open-mmlab/mmengine#846: MMEngine drops them for
    every tensor a custom key matches, so a backbone norm under custom_keys['backbone'] keeps its decay)."""
    mine = [{"not": {"regex": [w for c in custom for w in c["regex"]]}}] if custom else []
    mine += later
    out = []
    if custom and any(cfg.get(k) is not None for k in FLAGS[1:6]):
        out.append("  # open-mmlab/mmengine#846: MMEngine applies the flags below only where no custom key matched"
                   " (a norm under a custom key keeps its decay), hence the `not` of each")
    if cfg.get("bias_lr_mult") is not None:
        out.append(_modifier("bias-lr", {"all": [BIAS, {"not": NORMS}, *mine]}, "lr_mult", cfg["bias_lr_mult"],
                             "bias_lr_mult: a tensor named bias, not of a norm"))
    if not has_wd:
        return out
    # MMEngine's decay flags are an if/elif chain: each excludes the ones before it.
    chain: list[tuple[str, dict[str, Any], str]] = [("norm_decay_mult", NORMS, "of a norm (BatchNorm, InstanceNorm, GroupNorm, LayerNorm)"),
             ("bias_decay_mult", BIAS, "named bias"),
             ("dwconv_decay_mult", {"module": "Conv2d", "where": "groups == in_channels"}, "a depthwise Conv2d's"),
             ("flat_decay_mult", {"ndim": 1}, "a 1-D tensor")]
    before: list[dict[str, Any]] = []
    for flag, match, what in chain:
        if cfg.get(flag) is None:
            continue
        parts = [match, *({"not": b} for b in before), *mine]
        name = flag.removesuffix("_decay_mult") + "-decay"
        out.append(_modifier(name, {"all": parts} if len(parts) > 1 else match, "weight_decay_mult", cfg[flag],
                             f"{flag}: {what}" + (", none of the flags before it" if before else "")))
        before.append(match)
    return out


def _modifier(name: str, match: Mapping[str, Any], key: str, value: Any, why: str) -> str:
    return f"  - {{name: {name}, match: {json.dumps(match)}, {key}: {num(float(value))}}}   # {why}"
