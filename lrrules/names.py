"""Resolving a rule file against names and shapes alone: a checkpoint, a state dict, or a plain list.

The plan is the one a model with those parameters would give (the same groups, reports and errors),
less what needs the module itself (``layers: {by: timm}``) or the tensors (``Plan.param_groups``).
A safetensors file or index is read from its headers only, and nothing here imports torch unless
the source is a torch checkpoint (``.pt``, ``.pth``, ``.bin``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ModelError

if TYPE_CHECKING:
    from .language import RuleSet
    from .params import ParamInfo
    from .plan import Plan

#: What :func:`resolve_names` accepts as a source of names and shapes.
Source = str | Path | Mapping[str, Any] | Iterable[tuple[str, Any]]

_CHECKPOINTS = (".safetensors", ".safetensors.index.json", ".pt", ".pth", ".bin")


def resolve_names(rules: str | Path | RuleSet, source: Source, *, ordered: bool | None = None) -> Plan:
    """The plan ``rules`` give parameters known by name and shape only.

    ``source`` is a checkpoint path (``.safetensors``, ``.safetensors.index.json``, ``.pt``, a
    torch.distributed.checkpoint folder; the extension in any case), a state
    dict (name -> tensor; integer tensors and BatchNorm statistics are buffers and left out), a
    mapping of name -> shape, or a list of ``(name, shape)`` pairs, in the model's order.
    ``ordered``: whether that order is the model's (what formulas reading ``layer`` or ``index``
    need); by default yes, except for safetensors files, which store tensors sorted by name.

    >>> plan = lrrules.resolve_names("rules.yaml", "model.safetensors")                # doctest: +SKIP
    >>> plan = lrrules.resolve_names("rules.yaml", [("fc.weight", (10, 512)), ("fc.bias", (10,))])  # doctest: +SKIP
    >>> plan.ok, plan.problems()                                                        # doctest: +SKIP
    (True, [])
    """
    from .language import RuleSet
    from .loader import load
    from .resolve import resolve_params

    ruleset = rules if isinstance(rules, RuleSet) else load(rules)
    params, in_order = names_and_shapes(source)
    return resolve_params(ruleset, params, (), None, in_order if ordered is None else ordered)


def names_and_shapes(source: Source) -> tuple[list[ParamInfo], bool]:
    """The parameters ``source`` describes (see :func:`resolve_names`), and whether they are in the
    model's order. Raises :class:`~lrrules.errors.ModelError` for what is not such a source."""
    from .params import ParamInfo

    if isinstance(source, (str, Path)):
        spec = str(source)
        from .checkpoints import is_distributed_checkpoint

        if not spec.lower().endswith(_CHECKPOINTS) and not is_distributed_checkpoint(Path(spec)):
            raise ModelError(f"{spec}: not a checkpoint; give a .safetensors, .safetensors.index.json, .pt or .pth "
                             "file, a torch.distributed.checkpoint folder, a state dict, or a list of (name, shape) "
                             "pairs")
        from .sources import open_model

        model = open_model(spec)
        return list(model.params), model.ordered
    pairs = source.items() if isinstance(source, Mapping) else source
    params: list[ParamInfo] = []
    seen: set[str] = set()
    shapes: dict[tuple[int, ...], tuple[int, ...]] = {}  # one tuple per distinct shape, shared
    try:
        items = iter(pairs)
    except TypeError:
        raise ModelError(f"a {type(source).__name__} is not a source of names and shapes; give a checkpoint "
                         "path, a state dict, or a list of (name, shape) pairs") from None
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise ModelError(f"{item!r:.60}: each entry is a (name, shape) pair") from None
        if not isinstance(name, str) or not name:
            raise ModelError(f"{name!r:.60}: a parameter name is a non-empty string")
        if name in seen:
            raise ModelError(f"'{name}' is given twice; each parameter name once")
        seen.add(name)
        shape, is_param = _shape(name, value)
        if is_param:
            params.append(ParamInfo(name, shapes.setdefault(shape, shape), None, True, len(params)))
    if not params:
        raise ModelError("the source holds no parameters (only buffers or nothing), so there is nothing to "
                         "resolve rules against")
    return params, True


def _shape(name: str, value: Any) -> tuple[tuple[int, ...], bool]:
    """A value's shape, and whether it is a parameter (a tensor of integers, or a BatchNorm
    statistic, is a buffer)."""
    from .checkpoints import is_param

    if hasattr(value, "shape") and hasattr(value, "dtype"):  # a tensor (torch, numpy), read without importing
        dtype = value.dtype
        floating = getattr(dtype, "is_floating_point", None)
        if floating is None:  # numpy: kind 'f' (float) or 'c' (complex)
            floating = getattr(dtype, "kind", "f") in "fc"
        complex_ = getattr(dtype, "is_complex", False)
        shape = tuple(int(d) for d in value.shape)
        return shape, is_param(name, not (floating or complex_))
    if isinstance(value, (list, tuple)) and all(type(d) is int and d >= 0 for d in value):
        return tuple(value), is_param(name, False)
    raise ModelError(f"'{name}': {value!r:.60} is not a shape; give a list of whole numbers >= 0, or a tensor")
