"""Hugging Face ``TrainingArguments`` as a rule file: the Trainer's two groups (decay and no decay,
from ``get_decay_parameter_names``) and, with ``--llrd DECAY``, the usual BERT/RoBERTa layer-wise
lr decay: the head at the base lr, each block below ``DECAY`` times the one above, the embeddings last.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from typing import Any

import torch

from ..capture import num
from ..errors import UsageError
from . import read_mapping

#: transformers' get_decay_parameter_names: searched in the lowercased name, or an nn.LayerNorm on the path.
NO_DECAY_PATTERNS = (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")
def read(path: str) -> dict[str, Any]:
    """TrainingArguments' fields from a YAML or JSON file (``learning_rate``, ``weight_decay``, ``optim``, ...)."""
    return read_mapping(path, "a mapping of TrainingArguments fields")


def _arguments(config: Mapping[str, Any], out: str) -> Any:
    from transformers import TrainingArguments

    # where it writes, what it reports to and its device do not change the groups: a real file's are set aside
    given = {k: v for k, v in config.items() if k not in ("llrd", "output_dir", "report_to", "use_cpu")}
    return TrainingArguments(output_dir=out, report_to=[], use_cpu=True, **given)


def peer(config: Mapping[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer transformers' own ``Trainer.create_optimizer`` makes for ``model``; with ``llrd``,
    its groups with each tensor's lr set by the recipe's loop (head and pooler: the base lr; encoder
    layer ``i`` of ``L``: ``DECAY ** (L - i)``; the embeddings: ``DECAY ** (L + 1)``)."""
    from transformers import Trainer

    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model=model, args=_arguments(config, out))
        optimizer: torch.optim.Optimizer = trainer.create_optimizer()
    if config.get("llrd") is None:
        return optimizer
    decay, names = float(config["llrd"]), {id(p): n for n, p in model.named_parameters()}
    layers = [int(m.group(1)) for n in names.values() if (m := re.search(r"\.layers?\.(\d+)\.", n))]
    top = max(layers, default=-1) + 1
    groups = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = names[id(p)]
            m = re.search(r"\.layers?\.(\d+)\.", name)
            k = top - int(m.group(1)) if m else top + 1 if "embed" in name else 0
            groups.append({**group, "params": [p], "lr": group["lr"] * decay ** k})
    same: Any = type(optimizer)
    return same(groups)  # type: ignore[no-any-return]


def rules(config: Mapping[str, Any], model: torch.nn.Module | None = None) -> str:
    """The rule file (YAML text) the Trainer's groups come to for these arguments.

    >>> text = rules({"learning_rate": 2e-5, "weight_decay": 0.01}, model)   # doctest: +SKIP
    """
    from transformers import Trainer

    with tempfile.TemporaryDirectory() as out:
        args: Any = _arguments(config, out)
    try:
        made: Any = Trainer.get_optimizer_cls_and_kwargs(args, model)  # type: ignore[arg-type]  # any nn.Module  # the class and options it would use
    except Exception as exc:  # transformers' own word on an optim it cannot make here
        raise UsageError(f"optim {args.optim!r}: {exc}") from None
    cls: type = made[0]
    kwargs: dict[str, Any] = made[1]
    if getattr(torch.optim, cls.__name__, None) is not cls:
        raise UsageError(f"optim {str(getattr(args.optim, 'value', args.optim))!r} is {cls.__module__}.{cls.__name__}, "
                         "not a torch.optim class: not imported")
    options = {k: v for k, v in kwargs.items() if k != "lr"}
    out_lines = ["# Imported from Hugging Face TrainingArguments (Trainer.create_optimizer).", "version: 1", "defaults:",
                 f"  lr: {num(float(args.learning_rate))}", f"  weight_decay: {num(float(args.weight_decay))}",
                 *(f"  {k}: {num(v)}" for k, v in options.items()), f"optimizer: {{type: {cls.__name__}}}"]
    if config.get("llrd") is not None:
        out_lines += ["layers: {by: blocks}   # the encoder's layers; embeddings first, pooler and head last",
                      "rules:", f'  - {{name: llrd, match: "*", lr_mult: "{num(float(config["llrd"]))} ** depth"}}'
                      "   # head: the base lr; each layer below: DECAY times the one above"]
    else:
        out_lines += ["rules:", '  - {name: all, match: "*"}']
    regexes = ", ".join(f"'(?i){p}'" for p in NO_DECAY_PATTERNS)
    out_lines += ["modifiers:", "  # get_decay_parameter_names: no decay under an nn.LayerNorm, or where a pattern is "
                  "found in the lowercased name (RMSNorm classes count by name only)",
                  f"  - {{name: no-decay, match: {{any: [{{module: LayerNorm}}, {{regex: [{regexes}]}}]}}, "
                  "weight_decay: 0}"]
    return "\n".join(out_lines) + "\n"
