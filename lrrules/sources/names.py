"""Resolving a rule file against names and shapes alone (a checkpoint, a state dict, a list): the plan
a model with those parameters gives, less what needs the module or tensors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from ..params import ParamInfo
from .checkpoints import is_distributed_checkpoint, is_param

if TYPE_CHECKING:
    from ..language import RuleSet
    from ..plan import Plan

#: What :func:`resolve_names` accepts as a source of names and shapes.
Source = str | Path | Mapping[str, Any] | Iterable[tuple[str, Any]]

CHECKPOINTS = (".safetensors", ".safetensors.index.json", ".pt", ".pth", ".bin")


def resolve_names(rules: str | Path | RuleSet, source: Source, *, ordered: bool | None = None) -> Plan:
    """The plan ``rules`` give parameters known by name and shape only: ``source`` is a checkpoint path,
    a state dict (integer tensors and BatchNorm statistics are buffers), a mapping name -> shape, or
    ``(name, shape)`` pairs. ``ordered``: whether that is the model's order (``layer`` and ``index``
    need it); by default yes, but for safetensors files.

    >>> lrrules.resolve_names("rules.yaml", [("fc.weight", (10, 512)), ("fc.bias", (10,))]).ok  # doctest: +SKIP
    True
    """
    from ..language import RuleSet
    from ..loader import load
    from ..resolver import resolve_params

    ruleset = rules if isinstance(rules, RuleSet) else load(rules)
    params, in_order = names_and_shapes(source)
    return resolve_params(ruleset, params, (), None, in_order if ordered is None else ordered)


def names_and_shapes(source: Source) -> tuple[list[ParamInfo], bool]:
    """The parameters ``source`` describes (see :func:`resolve_names`), and whether they are in order.

    >>> params, ordered = names_and_shapes({"fc.weight": [10, 512], "bn.running_mean": [10]})
    >>> [(p.name, p.shape) for p in params], ordered
    ([('fc.weight', (10, 512))], True)
    """
    if isinstance(source, (str, Path)):
        spec = str(source)
        if not spec.lower().endswith(CHECKPOINTS) and not is_distributed_checkpoint(Path(spec)):
            raise ModelError(f"{spec}: not a checkpoint; give a .safetensors, .safetensors.index.json, .pt or .pth "
                             "file, a torch.distributed.checkpoint folder, a state dict, or a list of (name, shape) "
                             "pairs")
        from . import open_model

        model = open_model(spec)
        return list(model.params), model.ordered
    try:
        items = iter(source.items() if isinstance(source, Mapping) else source)
    except TypeError:
        raise ModelError(f"a {type(source).__name__} is not a source of names and shapes; give a checkpoint "
                         "path, a state dict, or a list of (name, shape) pairs") from None
    params: list[ParamInfo] = []
    seen: set[str] = set()
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
        shape, integer = _shape(name, value)
        if is_param(name, integer):
            params.append(ParamInfo(name, shape, None, True, len(params)))
    if not params:
        raise ModelError("the source holds no parameters (only buffers or nothing), so there is nothing to "
                         "resolve rules against")
    return params, True


def _shape(name: str, value: Any) -> tuple[tuple[int, ...], bool]:
    """A tensor's (torch, numpy: neither imported) or a list's shape, and whether it holds integers."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        dtype = value.dtype
        floating = getattr(dtype, "is_floating_point", None)
        if floating is None:  # numpy: kind 'f' (float) or 'c' (complex)
            floating = getattr(dtype, "kind", "f") in "fc"
        return tuple(int(d) for d in value.shape), not (floating or getattr(dtype, "is_complex", False))
    if isinstance(value, (list, tuple)) and all(type(d) is int and d >= 0 for d in value):
        return tuple(value), False
    raise ModelError(f"'{name}': {value!r:.60} is not a shape; give a list of whole numbers >= 0, or a tensor")
