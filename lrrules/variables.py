"""The per-tensor variables a formula reads (the tensor's, the layering's, muP's from the base
shapes), and why one has no value for a tensor."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ModelError
from .vocabulary import MAX_DIMS

if TYPE_CHECKING:
    from .matching import Captures
    from .params import ParamInfo

DIM_NAMES = tuple(f"dim{k}" for k in range(MAX_DIMS))
NONE = object()  # a variable with no value for a parameter (dim2 of a matrix, the layer of none)

#: A tensor's size at the base width in each dimension; ``None`` for a dimension that is no width.
BaseShape = tuple[int | None, ...]
BaseShapes = Mapping[str, BaseShape]
#: The variables muP defines per tensor from its base shape (mup's ``InfShape``).
BASE_VARIABLES = frozenset({"width_mult", "ninf"})


#: What a tensor's variables are read against: the resolver (``rules``, ``layers``, ``num_layers``,
#: ``num_tensors``, ``base``).
Scope = Any


_PARAMETER_VARIABLES = {
    "base_lr": lambda r, info: r.rules.defaults.lr,
    "base_weight_decay": lambda r, info: r.rules.defaults.weight_decay,
    "num_layers": lambda r, info: r.num_layers,
    "num_tensors": lambda r, info: r.num_tensors,
    "index": lambda r, info: info.index,
    "ndim": lambda r, info: info.ndim,
    "numel": lambda r, info: info.numel,
    "fan_in": lambda r, info: info.fan_in,
    "fan_out": lambda r, info: info.fan_out,
}


def variable(r: Scope, info: ParamInfo, name: str) -> Any:
    """The value of variable ``name`` for ``info``, or ``NONE`` (no such variable, or no value: a matrix's ``dim2``)."""
    if name in ("layer", "depth"):
        layer = r.layers[info.index]
        return NONE if layer is None else layer if name == "layer" else r.num_layers - 1 - layer
    if name in DIM_NAMES:
        k = int(name[3:])
        return info.shape[k] if k < len(info.shape) else NONE
    if name in BASE_VARIABLES:
        return base_variable(r.base, info, name)
    getter = _PARAMETER_VARIABLES.get(name)
    return NONE if getter is None else getter(r, info)


def environment(r: Scope, info: ParamInfo, captures: Captures, names: Iterable[str]) -> dict[str, Any]:
    """The variables ``names`` that have a value for ``info``: the captures, then ``vars``, then :func:`variable`."""
    env = {}
    for name in names:
        found = captures[name] if name in captures else r.rules.vars.get(name, NONE)
        found = variable(r, info, name) if found is NONE else found
        if found is not NONE:
            env[name] = found
    return env


def missing(r: Scope, info: ParamInfo, name: str) -> str:
    """Why the variable ``name`` a formula reads has no value for ``info``."""
    if name in DIM_NAMES:
        return (f"parameter '{info.name}' has shape {list(info.shape)}, so no {name}; add "
                f"'ndim: [{int(name[3:]) + 1}, ...]' (or more) to the match, or use fan_in / fan_out")
    if name in ("layer", "depth"):
        return f"parameter '{info.name}' has no layer: it matches none of layers.patterns; add one that covers it"
    if name in BASE_VARIABLES:
        return base_problem(r.base, info, name)
    return f"regex group '{name}' captured nothing for parameter '{info.name}'"


# --- base shapes (muP) -----------------------------------------------------------------------------


def base_shapes(base: Any) -> dict[str, BaseShape]:
    """Each name's base shape from a model at the base width, :class:`ParamInfo` records, or a mapping
    (mup's: ``None`` for a dimension that is no width).

    >>> base_shapes({"fc.weight": [64, None]})
    {'fc.weight': (64, None)}
    """
    if hasattr(base, "named_parameters"):
        from .params import collect

        base = collect(base)[0]
    if not isinstance(base, Mapping):
        return {name: tuple(p.shape) for p in base for name in p.names}
    out = {}
    for name, shape in base.items():
        dims = tuple(shape)
        if not isinstance(name, str) or not all(d is None or (type(d) is int and d >= 0) for d in dims):
            raise ModelError(f"base shape of {name!r} is {list(dims)}: sizes are whole numbers >= 0 "
                             "(None for a dimension that is no width)")
        out[name] = dims
    return out


def check_base(base: BaseShapes, params: Sequence[ParamInfo]) -> None:
    """Refuse a base with tensors the model lacks (mup asserts the two name sets are equal)."""
    names = {n for p in params for n in p.names}
    extra = sorted(n for n in base if n not in names)
    if extra:
        shown = ", ".join(f"'{n}'" for n in extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise ModelError(f"the base model has tensors the model lacks ({shown}); the base must be the same "
                         "architecture at the base width")


def _base_shape(base: BaseShapes | None, info: ParamInfo) -> BaseShape | None:
    return None if base is None else next((base[n] for n in info.names if n in base), None)


def infinite_dims(base: BaseShapes | None, info: ParamInfo) -> tuple[tuple[int, int], ...] | None:
    """(base size, size) of each dimension that differs from the base shape: muP's width dimensions."""
    shape = _base_shape(base, info)
    if shape is None or len(shape) != len(info.shape):
        return None
    return tuple((b, d) for b, d in zip(shape, info.shape) if b is not None and b != d)


def base_variable(base: BaseShapes | None, info: ParamInfo, name: str) -> Any:
    """mup's ``InfShape``: ``ninf``, the dimensions that differ; ``width_mult``, size / base size of the last
    (1 when none differ, none when more than two do)."""
    dims = infinite_dims(base, info)
    if dims is None or (name == "width_mult" and len(dims) > 2):
        return NONE
    return len(dims) if name == "ninf" else dims[-1][1] / dims[-1][0] if dims else 1


def base_problem(base: BaseShapes | None, info: ParamInfo, name: str) -> str:
    """Why the muP variable ``name`` has no value for ``info``."""
    shape = _base_shape(base, info)
    if base is None:
        return (f"'{name}' (muP) reads the base shapes, and none were given: pass the same architecture at the "
                "base width (resolve(rules, model, base=narrow_model), build(..., base=...), --base-model SPEC)")
    if shape is None:
        return f"parameter '{info.name}' is not in the base model; the base must be the same architecture"
    if len(shape) != len(info.shape):
        return (f"parameter '{info.name}' has shape {list(info.shape)} and base shape {list(shape)}: "
                "another number of dimensions")
    return (f"parameter '{info.name}' (shape {list(info.shape)}, base {list(shape)}) has "
            f"{len(infinite_dims(base, info) or ())} width dimensions; muP defines width_mult for at most two "
            "(mup's optimizers refuse more)")

