"""Layer indices for the formula variables ``layer``, ``num_layers`` and ``depth``.

Layer 0 is nearest the input. Each strategy of the rule file's ``layers`` section is one function
here, returning one index per parameter (``None`` where a parameter has no layer) and the count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import LrrulesError
from .language import ModuleLayers, PatternLayers, TensorLayers, TimmLayers
from .matching import compile_matcher
from .model import ParamInfo, clean_name, unwrap

if TYPE_CHECKING:
    import torch

Layering = tuple[list[int | None], int]


class LayerError(LrrulesError):
    """A layer strategy that cannot be applied to this model."""


def assign(spec: Any, params: Sequence[ParamInfo], model: torch.nn.Module | None = None) -> Layering:
    """Each parameter's layer index under ``spec``, and the number of layers.

    >>> assign(ModuleLayers(by="module"), params)    # doctest: +SKIP
    ([0, 0, 1, 1], 2)
    """
    if isinstance(spec, TensorLayers):
        return [p.index for p in params], len(params)
    if isinstance(spec, ModuleLayers):
        return by_module(params, spec.level)
    if isinstance(spec, PatternLayers):
        return by_patterns(params, spec.patterns)
    if isinstance(spec, TimmLayers):
        if model is None:
            raise LayerError("layers 'by: timm' needs the model itself, not only its parameter names (a "
                             "checkpoint has none): give the model's name, or count layers by module or patterns")
        return by_timm(params, model)
    raise TypeError(f"unknown layer strategy {spec!r}")


def by_module(params: Sequence[ParamInfo], level: int) -> Layering:
    numbers: dict[str, int] = {}
    layers: list[int | None] = []
    for p in params:
        key = ".".join(p.name.split(".")[:-1][:level])  # the owning module's path, cut to `level` parts
        layers.append(numbers.setdefault(key, len(numbers)))
    return layers, len(numbers)


def by_patterns(params: Sequence[ParamInfo], patterns: Sequence[Any]) -> Layering:
    matchers = [compile_matcher(m) for m in patterns]
    layers: list[int | None] = []
    for p in params:
        layers.append(next((i for i, m in enumerate(matchers) if m.match(p) is not None), None))
    return layers, len(matchers)


def by_timm(params: Sequence[ParamInfo], model: torch.nn.Module) -> Layering:
    """timm's layer map, as ``timm.optim.param_groups_layer_decay`` builds it.

    Models with ``group_matcher`` use it (fine-grained); others use timm's fallback, which puts the
    classifier named in the model's ``pretrained_cfg`` last. Parameters outside the map go in the
    last layer, as timm does.
    """
    from timm.models import group_parameters
    from timm.optim import auto_group_layers

    inner = unwrap(model)
    if hasattr(inner, "group_matcher"):
        raw = group_parameters(inner, inner.group_matcher(coarse=False), reverse=True)  # type: ignore[operator]
    else:
        raw = auto_group_layers(inner)
    layer_map = {clean_name(name): layer for name, layer in raw.items()}
    count = max(layer_map.values(), default=0) + 1
    last = count - 1
    return [layer_map.get(p.name, last) for p in params], count
