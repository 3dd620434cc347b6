"""timm's training arguments (``--opt adamw --lr --weight-decay --layer-decay``) as a rule file.

timm's ``create_optimizer_v2`` builds the groups: no weight decay for 1-D tensors and the model's
``no_weight_decay()``, and with ``layer_decay`` an lr scale of ``layer_decay ** (layer_max - layer)``
over the model's ``group_matcher`` layers.
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from ..capture import num
from ..errors import UsageError

#: timm train.py's names for what create_optimizer_v2 takes, and their defaults there.
ARGS = {"opt": "sgd", "lr": None, "weight_decay": 2e-5, "momentum": 0.9, "opt_eps": None, "opt_betas": None,
        "layer_decay": None, "layer_decay_min_scale": 0.0}


def read(path: str) -> dict[str, Any]:
    """timm's arguments from ``path``: its ``args.yaml`` (a mapping) or a command line (``--opt adamw ...``)."""
    text = Path(path).read_text()
    try:  # a command line (`python train.py --opt adamw ...`) may read as YAML text, or not as YAML at all
        data = yaml.safe_load(text) if not text.lstrip().startswith("--") else None
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        parser = argparse.ArgumentParser(prog="timm arguments", add_help=False)
        for key in ARGS:
            parser.add_argument("--" + key.replace("_", "-"), dest=key, type=_value, nargs="+" if key == "opt_betas" else None)
        data = {k: v for k, v in vars(parser.parse_known_args(shlex.split(text))[0]).items() if v is not None}
    config = {k: data.get(k, default) for k, default in ARGS.items()}
    if config["lr"] is None:
        raise UsageError(f"{path}: no lr (timm's train.py scales its own from lr_base and the batch size; give lr)")
    for key in ("lr", "weight_decay", "momentum", "opt_eps", "layer_decay", "layer_decay_min_scale"):
        if config[key] is not None and (isinstance(config[key], bool) or not isinstance(config[key], (int, float))):
            raise UsageError(f"{path}: {key} is {config[key]!r}; timm takes a number there")
    return config


def _value(text: str) -> Any:
    try:
        return json.loads(text)  # 1e-3 is a number here, where YAML 1.1 reads a string
    except ValueError:
        return text


def _kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    extra = {"eps": config["opt_eps"], "betas": config["opt_betas"]}
    return {k: v for k, v in extra.items() if v is not None}


def peer(config: Mapping[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    """timm's own optimizer for ``model`` from these arguments (``create_optimizer_v2``)."""
    from timm.optim import create_optimizer_v2  # type: ignore[attr-defined]  # re-exported without __all__

    optimizer: torch.optim.Optimizer = create_optimizer_v2(
        model, opt=config["opt"], lr=config["lr"], weight_decay=config["weight_decay"], momentum=config["momentum"],
        layer_decay=config["layer_decay"], layer_decay_min_scale=config["layer_decay_min_scale"], **_kwargs(config))
    return optimizer


def rules(config: Mapping[str, Any], model: torch.nn.Module | None = None) -> str:
    """The rule file (YAML text) for timm's arguments.

    >>> text = rules(read("args.yaml"))    # doctest: +SKIP
    """
    from timm.optim import get_optimizer_info  # type: ignore[attr-defined]  # re-exported without __all__

    name = str(config["opt"]).lower()
    if "_" in name:
        raise UsageError(f"opt {config['opt']!r}: a lookahead wrapper is an optimizer of its own, not imported")
    info = get_optimizer_info(name)
    options = _kwargs(config)
    options = {k: v for k, v in options.items() if (info.has_eps if k == "eps" else info.has_betas)}
    if info.has_momentum:
        options["momentum"] = config["momentum"]
    decay = config["layer_decay"]
    out = ["# Imported from timm's training arguments (timm.optim.create_optimizer_v2).",
           "# timm keeps each group's lr at the base lr and scales it by lr_scale in its scheduler; the lrs here",
           "# are the products (plan.param_groups(lr_scale=True) gives timm's convention back).",
           "version: 1", "defaults:", f"  lr: {num(float(config['lr']))}",
           f"  weight_decay: {num(float(config['weight_decay']))}", *(f"  {k}: {num(v)}" for k, v in options.items()),
           f"optimizer: {{type: {name}}}   # timm's name: its own defaults come with it (sgd: nesterov)"]
    if decay is not None:
        scale = f"{num(float(decay))} ** depth"
        if config["layer_decay_min_scale"]:
            scale = f"max({num(float(config['layer_decay_min_scale']))}, {scale})"
        out += ["layers: {by: timm}   # the model's group_matcher, as param_groups_layer_decay counts it",
                "rules:", f'  - {{name: layer-decay, match: "*", lr_mult: "{scale}"}}   # layer_decay ** (layer_max - layer)']
    else:
        out += ["rules:", "  - {name: all, match: \"*\"}"]
    if config["weight_decay"]:
        no_decay: list[dict[str, Any]] = [{"ndim": [0, 1]}, {"role": "no_weight_decay"}]
        why = "1-D tensors and the model's no_weight_decay()"
        if decay is None:  # param_groups_weight_decay tests the name too; param_groups_layer_decay does not
            no_decay.append({"glob": "*.bias"})
            why += ", and any name ending in .bias (without layer decay only)"
        out += ["modifiers:", f"  - {{name: no-decay, match: {json.dumps({'any': no_decay})}, weight_decay: 0}}   # {why}"]
    return "\n".join(out) + "\n"
