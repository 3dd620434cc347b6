"""``lrrules init``: a starting rule file for a model, that resolves cleanly against it.

The file has a fast head (the model's classifier), an optional layer decay over the rest, and
optionally no weight decay for biases, norms and the model's ``no_weight_decay()`` names. It begins
with the ``yaml-language-server`` line that makes editors check it against the JSON Schema.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .model import ParamInfo, unwrap

if TYPE_CHECKING:
    import torch

def head_prefix(params: Sequence[ParamInfo], model: torch.nn.Module | None) -> str | None:
    """The name of the model's classifier module: timm's ``pretrained_cfg['classifier']`` where it
    names parameters, else the top-level module that holds the last parameter."""
    names = [p.name for p in params]
    inner = unwrap(model) if model is not None else None
    classifier = getattr(inner, "pretrained_cfg", {}).get("classifier") if inner is not None else None
    candidates = classifier if isinstance(classifier, (list, tuple)) else [classifier]
    for prefix in candidates:
        if prefix and any(n.startswith(prefix + ".") for n in names):
            return str(prefix)
    if not names or "." not in names[-1]:
        return None
    return names[-1].split(".")[0]


def starter(
    params: Sequence[ParamInfo],
    model: torch.nn.Module | None,
    label: str,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    layer_decay: float | None = None,
    head_mult: float = 10.0,
    no_decay_norm_bias: bool = False,
    schema: str = "lrrules.schema.json",
) -> str:
    """The text of a starting rule file for ``params`` (and ``model``, where one was built).

    ``schema`` is where editors find the JSON Schema (``lrrules schema`` writes it), relative to the file.
    """
    head = head_prefix(params, model)
    timm_model = model is not None and hasattr(unwrap(model), "pretrained_cfg")
    lines = [
        f"# yaml-language-server: $schema={schema}",
        f"# Starting rules for {label}, written by `lrrules init`.",
        f"#   lrrules check <this file> --model {label}",
        "version: 1",
        "defaults:",
        f"  lr: {_number(lr)}",
        f"  weight_decay: {_number(weight_decay)}",
        "optimizer:",
        "  type: AdamW",
    ]
    if layer_decay is not None:
        lines += ["layers:", f"  by: {'timm' if timm_model else 'module'}"]
    lines.append("rules:")
    if head is not None:
        lines += ["  - name: head", f"    match: {_quote(head + '.*')}", f"    lr_mult: {_number(head_mult)}"]
    lines += ["  - name: body", "    fallback: true"]
    if layer_decay is not None:
        lines.append(f"    lr_mult: {_quote(f'{_number(layer_decay)} ** depth')}")
    if no_decay_norm_bias:
        extra = _no_weight_decay_names(model, params)
        parts = ['{ndim: [0, 1]}', '{module: "*Norm*"}'] if model is not None else ['{ndim: [0, 1]}']
        parts += [_quote(n) for n in extra]
        lines += ["modifiers:", "  - name: no-decay", f"    match: {{any: [{', '.join(parts)}]}}",
                  "    weight_decay: 0"]
    return "\n".join(lines) + "\n"


def _no_weight_decay_names(model: torch.nn.Module | None, params: Sequence[ParamInfo]) -> list[str]:
    inner = unwrap(model) if model is not None else None
    if inner is None or not hasattr(inner, "no_weight_decay"):
        return []
    try:
        wanted = set(inner.no_weight_decay())  # type: ignore[operator]
    except Exception:  # a model's own hook; a failure means only that there is no list to add
        return []
    names = {n for p in params for n in p.names}
    return sorted(n for n in wanted if n in names)


def _number(value: Any) -> str:
    return repr(float(value)) if isinstance(value, float) and not float(value).is_integer() else str(value)


def _quote(text: str) -> str:
    return json.dumps(text)
