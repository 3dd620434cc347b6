"""Collecting a model's parameters as :class:`ParamInfo`: names, shapes, owners, in registration order.

Names are the model's own with the parts wrappers add taken away (``module.`` of DDP and
DataParallel, ``_orig_mod.`` of ``torch.compile``, ``_checkpoint_wrapped_module.`` of activation
checkpointing, ``_fsdp_wrapped_module.`` of FSDP), so one rule file serves the bare and the wrapped
model. A tensor reachable under several names (tied weights, a module used twice) is one
:class:`ParamInfo` with every name it has.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import torch

#: Name parts that wrappers insert and that lrrules removes.
WRAPPER_PARTS = frozenset({"_orig_mod", "_checkpoint_wrapped_module", "_fsdp_wrapped_module"})
#: Wrapper classes whose ``.module`` is the real model (their names start with ``module.``).
_ROOT_WRAPPERS = frozenset({"DistributedDataParallel", "DataParallel", "DeepSpeedEngine"})


class ParamInfo(NamedTuple):
    """One parameter tensor as the rules see it.

    ``name`` is its first name in registration order, ``aliases`` its other names (tied weights),
    ``module`` the class name of the module that owns it (``None`` when only names are known),
    ``index`` its position among the model's parameters. A named tuple: a large model has many.
    """

    name: str
    shape: tuple[int, ...]
    module: str | None
    requires_grad: bool
    index: int  # type: ignore[assignment]  # a field, where tuple has a method
    aliases: tuple[str, ...] = ()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP, DataParallel, DeepSpeed and ``torch.compile`` wrappers (any nesting)."""
    while True:
        kind = type(model).__name__
        if kind in _ROOT_WRAPPERS and hasattr(model, "module"):
            model = model.module  # type: ignore[assignment]
        elif kind == "OptimizedModule" and hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        else:
            return model


def clean_name(name: str) -> str:
    """``layer1._orig_mod.0._checkpoint_wrapped_module.conv.weight`` -> ``layer1.0.conv.weight``."""
    if "_" not in name:
        return name
    return ".".join(part for part in name.split(".") if part not in WRAPPER_PARTS)


def collect(model: torch.nn.Module) -> tuple[list[ParamInfo], list[torch.nn.Parameter]]:
    """Every parameter tensor of ``model`` once, in registration order, with the tensors themselves.

    >>> infos, tensors = collect(torch.nn.Linear(2, 3))      # doctest: +SKIP
    >>> [(p.name, p.shape) for p in infos]                    # doctest: +SKIP
    [('weight', (3, 2)), ('bias', (3,))]
    """
    infos: list[ParamInfo] = []
    tensors: list[Any] = []
    position: dict[int, int] = {}
    extra: dict[int, list[str]] = {}  # other names of tensors met more than once
    for name, owner, tensor in _named_parameters(unwrap(model)):
        key = id(tensor)
        seen = position.get(key)
        if seen is not None:
            others = extra.setdefault(seen, [])
            if name != infos[seen].name and name not in others:
                others.append(name)
            continue
        position[key] = len(infos)
        infos.append(ParamInfo(name, tuple(tensor.shape), owner, tensor.requires_grad, len(infos)))
        tensors.append(tensor)
    for i, others in extra.items():
        if others:
            infos[i] = infos[i]._replace(aliases=tuple(others))
    return infos, tensors


def _named_parameters(model: torch.nn.Module) -> Iterator[tuple[str, str, Any]]:
    for module_name, module in model.named_modules(remove_duplicate=False):
        if not module._parameters:
            continue
        owner = type(module).__name__
        prefix = clean_name(module_name) + "." if module_name else ""
        for local, tensor in module._parameters.items():
            if tensor is not None:
                yield prefix + local, owner, tensor


def build(name: str, num_classes: int | None = None, **kwargs: Any) -> torch.nn.Module:
    """A timm model by name, with random weights (``pretrained=False``: nothing is downloaded).

    It is built on the meta device, so no memory is allocated for its weights; a model whose
    construction needs real values falls back to the CPU. An unknown name gets the closest known ones.

    >>> build("resnet18", num_classes=2)          # doctest: +SKIP
    """
    import difflib

    import timm

    from .errors import ModelError

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ModelError(f"'{name}' is not a timm model name{hint} (see timm.list_models())")
    args = {"pretrained": False, **kwargs}
    if num_classes is not None:
        args["num_classes"] = num_classes
    try:
        return on_meta(lambda: timm.create_model(name, **args))  # type: ignore[no-any-return]
    except Exception as exc:
        raise ModelError(f"timm could not build '{name}' with {args}: {exc}") from None


def on_meta(make: Callable[[], Any]) -> Any:
    """``make()`` on the meta device (no memory for weights), or on the CPU where that fails: some
    constructors compute with their tensors while they build."""
    import torch

    from .errors import ModelError

    try:
        with torch.device("meta"):
            return make()
    except ModelError:
        raise
    except Exception:
        return make()
