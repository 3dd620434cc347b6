"""``lrrules init``: a starting rule file for a model that resolves cleanly against it: a fast head
(the classifier), optionally a layer decay over the rest and no weight decay for biases, norms and
``no_weight_decay()`` names, under the ``yaml-language-server`` line that has editors check it."""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .vocabulary import DEFAULT_TYPE
from .params import ParamInfo, clean_name, unwrap
from .roles import holder

if TYPE_CHECKING:
    import torch

    from .plan import Plan
    from .sources import Model


def head_prefixes(params: Sequence[ParamInfo], model: torch.nn.Module | None) -> list[str]:
    """The module names of the model's classifiers, each once: the names in timm's
    ``pretrained_cfg['classifier']`` that hold parameters; a Hugging Face model's task heads (outside
    its base model) and output embeddings; else the module holding the last parameter registered. None
    for a model without a classifier, nor for a "head" that would hold every parameter."""
    names = [n for p in params for n in p.names]
    inner = unwrap(model) if model is not None else None
    candidates: list[Any]
    if inner is not None and hasattr(inner, "pretrained_cfg"):
        classifier = getattr(inner, "pretrained_cfg", {}).get("classifier")
        candidates = list(classifier) if isinstance(classifier, (list, tuple)) else [classifier]
    elif inner is not None and hasattr(inner, "base_model_prefix") and hasattr(inner, "get_output_embeddings"):
        candidates = _hf_heads(inner)
    else:
        last = _last_name(params, inner)
        candidates = [holder(last)] if last and "." in last else []
    found = [str(c) for c in dict.fromkeys(candidates)
             if c and any(n == c or n.startswith(c + ".") for n in names)]
    found = [c for c in found if not any(c.startswith(other + ".") for other in found)]  # lm_head, not lm_head.decoder
    if found and all(any(n == c or n.startswith(c + ".") for c in found) for n in names):
        return []  # a head that is the whole model is no head
    return found


def _hf_heads(model: Any) -> list[str]:
    """A Hugging Face model's top-level modules outside the base model, and its output embeddings' module."""
    heads = []
    base = getattr(model, "base_model_prefix", "")
    if base and hasattr(model, base):
        heads += [name for name, child in model.named_children()
                  if name != base and any(True for _ in child.parameters())]
    output = model.get_output_embeddings()
    if output is not None:
        heads += [name for name, module in model.named_modules() if module is output][:1]
    return heads


def _last_name(params: Sequence[ParamInfo], model: Any) -> str | None:
    """The name of the parameter registered last, counting a tied tensor's later names."""
    if model is not None:
        names = [name for name, _ in model.named_parameters(remove_duplicate=False)]
        return clean_name(names[-1]) if names else None
    return params[-1].name if params else None


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
    """The text of a starting rule file for ``params`` (and ``model``, where one was built);
    ``schema``: where editors find the JSON Schema (``lrrules schema`` writes it), relative to the file."""
    heads = head_prefixes(params, model)
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
        f"  type: {DEFAULT_TYPE}",
    ]
    if layer_decay is not None:
        # timm's own grouping where timm groups the model; the repeated blocks everywhere else
        lines += ["layers:", f"  by: {'timm' if timm_model else 'blocks'}"]
    lines.append("rules:")
    if heads:
        patterns = [_quote(_glob_escape(h) + ".*") for h in heads]
        match = patterns[0] if len(patterns) == 1 else f"[{', '.join(patterns)}]"
        lines += ["  - name: head", f"    match: {match}", f"    lr_mult: {_number(head_mult)}"]
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
        wanted = set(getattr(inner, "no_weight_decay")())  # torch types a module's attribute as a Tensor
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001  a model's own hook; a failure means only that there is no list to add
        return []
    names = [n for p in params for n in p.names]
    out = []
    for entry in sorted(str(e) for e in wanted):
        if entry in names:  # a name: matched as itself, even with glob characters in it
            out.append(_glob_escape(entry))
        elif any(fnmatch.fnmatchcase(n, entry) for n in names):  # timm's entries are fnmatch patterns
            out.append(entry)
    return out


def _glob_escape(name: str) -> str:
    """``blocks[0]`` -> ``blocks[[]0[]]``: a name that a glob matches literally."""
    return re.sub(r"[][*?]", lambda m: f"[{m.group()}]", name)


def _number(value: Any) -> str:
    return repr(float(value)) if isinstance(value, float) and not float(value).is_integer() else str(value)


def _quote(text: str) -> str:
    # JSON's double quotes, read the same by YAML, except a character beyond U+FFFF: JSON escapes
    # it as a surrogate pair, which YAML refuses; YAML's own escape is \UXXXXXXXX.
    if text.isascii() or max(map(ord, text)) <= 0xFFFF:
        return json.dumps(text)
    return '"' + "".join(f"\\U{ord(c):08x}" if ord(c) > 0xFFFF else json.dumps(c)[1:-1] for c in text) + '"'


def checked_starter(model: Model, source: str = "<init>", **options: Any) -> tuple[str, Plan]:
    """The :func:`starter` text for ``model`` (``options``: its keywords) and its plan, which resolves
    cleanly: a starting file that does not is lrrules' bug (:class:`UsageError` with the problems).

    >>> text, plan = checked_starter(open_model("resnet18"), layer_decay=0.75)  # doctest: +SKIP
    """
    from .layers import KnownLayers
    from .loader import loads
    from .resolver import resolve_params

    module = None if isinstance(model.module, KnownLayers) else model.module  # init opens its model uncached
    text = starter(model.params, module, model.label, **options)
    plan = resolve_params(loads(text, source), model.params, model.tensors, model.module, model.ordered)
    if not plan.ok or plan.unused_rules:
        raise UsageError("the starting file does not resolve cleanly:\n  " + "\n  ".join(
            plan.problems() + plan.warnings()))
    return text, plan


def schema_reference(out: Path | None, given: str | None = None) -> tuple[str, Path | None]:
    """The JSON Schema's path that the file written to ``out`` names on its first line (``given``, else
    ``schemas/lrrules.schema.json`` relative to the file), and where the schema must be written for
    it to resolve (``None``: nowhere).

    >>> schema_reference(None, "https://example.org/lrrules.schema.json")
    ('https://example.org/lrrules.schema.json', None)
    """
    if given:
        return given, None
    here = Path("schemas") / "lrrules.schema.json"
    base = (out.parent if out is not None else Path(".")).resolve()
    schema = Path(os.path.relpath(here.resolve(), base)).as_posix() if here.is_file() else "lrrules.schema.json"
    if out is not None and not (out.parent / schema).is_file():
        return "lrrules.schema.json", out.parent / "lrrules.schema.json"  # written beside the file
    return schema, None
