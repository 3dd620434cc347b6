"""A model's parameters as :class:`ParamInfo`: names, shapes, owners, in registration order.

Names lose the parts wrappers add (DDP's ``module.``, ``_orig_mod.``, FSDP's and activation
checkpointing's), so one rule file serves the bare and the wrapped model; wrappers are known by
class and bases (MMEngine's subclasses too). A tied tensor is one record with all its names.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from itertools import takewhile
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import ModelError

if TYPE_CHECKING:
    import torch

#: Name parts that wrappers insert and that lrrules removes.
WRAPPER_PARTS = frozenset({"_orig_mod", "_checkpoint_wrapped_module", "_fsdp_wrapped_module"})
#: Wrapper classes whose ``.module`` is the real model, by name (DeepSpeed need not be imported).
_ROOT_WRAPPERS = frozenset({"DistributedDataParallel", "DataParallel", "DeepSpeedEngine"})
#: Name beginnings of a model likely wrapped in something lrrules does not know.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "model.module.")


class ParamInfo(NamedTuple):
    """One parameter tensor as the rules see it; ``module`` is ``None`` when only names are known."""

    name: str
    shape: tuple[int, ...]
    module: str | None
    requires_grad: bool
    index: int  # type: ignore[assignment]  # a field, where tuple has a method
    aliases: tuple[str, ...] = ()
    bases: tuple[str, ...] = ()  # the class names of the owning module's base classes, nearest first
    #: The owning module's plain attributes (``groups``, ``in_channels``) for ``where:``; empty from a checkpoint.
    attrs: tuple[tuple[str, int | float | str | bool], ...] = ()
    #: Each alias's owner (class name, bases, attrs) where one differs from the first name's; else empty.
    alias_modules: tuple[tuple[str, tuple[str, ...], tuple[tuple[str, Any], ...]], ...] = ()
    #: What the tensor does in its model, each role with its evidence (see :mod:`lrrules.roles`).
    roles: tuple[tuple[str, str], ...] = ()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def owner(self, name: str) -> tuple[str | None, tuple[str, ...], tuple[tuple[str, Any], ...]]:
        """The class name, bases and plain attributes of the module holding ``name``, one of :attr:`names`.

        >>> ParamInfo("embed.weight", (10, 4), "Embedding", True, 0, ("head.weight",),
        ...           alias_modules=(("Linear", (), (("out_features", 10),)),)).owner("head.weight")
        ('Linear', (), (('out_features', 10),))
        """
        if self.alias_modules and name in self.aliases:
            return self.alias_modules[self.aliases.index(name)]
        return self.module, self.bases, self.attrs

    @property
    def fan_in(self) -> int:  # see fans()
        return fans(self.shape)[0]

    @property
    def fan_out(self) -> int:
        return fans(self.shape)[1]


#: What the rules see of a parameter's owning module: its class name, base class names, plain attributes.
Owner = tuple[str, tuple[str, ...], tuple[tuple[str, Any], ...]]


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` as torch's ``nn.init`` counts them; 1-D (a bias: one constant input) ``(1, dim0)``.

    >>> fans((64, 3, 7, 7))
    (147, 3136)
    >>> fans((10,))
    (1, 10)
    """
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP, DataParallel, DeepSpeed and ``torch.compile`` wrappers (any nesting)."""
    from torch.nn import Module

    while True:
        kinds = _kinds(type(model))
        if kinds & _ROOT_WRAPPERS and isinstance(getattr(model, "module", None), Module):
            model = model.module  # type: ignore[assignment]
        elif "OptimizedModule" in kinds and hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        else:
            return model


def _kinds(kind: type) -> frozenset[str]:
    """The names of ``kind`` and its bases (a wrapper is known by name: DeepSpeed need not be imported)."""
    found = _KINDS.get(kind)
    if found is None:
        found = _KINDS[kind] = frozenset(k.__name__ for k in kind.__mro__)
    return found


_KINDS: dict[type, frozenset[str]] = {}  # per class, as _BASES


def wrapped_prefix(params: Sequence[ParamInfo]) -> str | None:
    """The wrapper-looking beginning every parameter name shares (``module.``), if there is one."""
    for prefix in WRAPPER_PREFIXES:
        if params and all(p.name.startswith(prefix) for p in params):
            return prefix
    return None


def _bases(kind: type) -> tuple[str, ...]:
    """The class names of ``kind``'s bases below ``nn.Module`` (``MyNorm`` -> ``('LayerNorm',)``)."""
    found = _BASES.get(kind)
    if found is None:
        names = (base.__name__ for base in kind.__mro__[1:])
        found = _BASES[kind] = tuple(takewhile(lambda n: n not in ("Module", "object"), names))
    return found


_BASES: dict[type, tuple[str, ...]] = {}


def plain_attributes(module: Any) -> tuple[tuple[str, int | float | str | bool], ...]:
    """The public attributes of ``module`` that are plain numbers, strings or bools, by name.

    >>> dict(plain_attributes(torch.nn.Conv2d(4, 4, 3, groups=4)))["groups"]    # doctest: +SKIP
    4
    """
    found = [(k, v) for k, v in vars(module).items()
             if not k.startswith("_") and type(v) in _PLAIN]
    return tuple(sorted(found))


_PLAIN = frozenset({int, float, str, bool})


def _attributes(module: Any, public: dict[tuple[str, ...], tuple[str, ...]]) -> tuple[tuple[str, Any], ...]:
    """:func:`plain_attributes`, each layout of attribute names sorted once (``public``: layout -> public names)."""
    state = vars(module)
    layout = tuple(state)
    names = public.get(layout)
    if names is None:
        names = public[layout] = tuple(sorted(k for k in layout if not k.startswith("_")))
    return tuple([(k, v) for k in names if type(v := state[k]) in _PLAIN])


def clean_name(name: str) -> str:
    """``layer1._orig_mod.0._checkpoint_wrapped_module.conv.weight`` -> ``layer1.0.conv.weight``."""
    if "_orig_mod" not in name and "_wrapped_module" not in name:
        return name
    return ".".join(part for part in name.split(".") if part not in WRAPPER_PARTS)


def collect(model: torch.nn.Module, source: str | None = None) -> tuple[list[ParamInfo], list[torch.nn.Parameter]]:
    """Every parameter tensor of ``model`` once, in registration order, with the tensors themselves;
    :class:`~lrrules.errors.ModelError` naming ``source`` (the ``--model`` text) for a model that cannot be read.

    >>> infos, tensors = collect(torch.nn.Linear(2, 3))      # doctest: +SKIP
    >>> [(p.name, p.shape) for p in infos]                    # doctest: +SKIP
    [('weight', (3, 2)), ('bias', (3,))]
    """
    where = source or f"the {type(model).__name__} model"
    try:
        return _collect(model)
    except ModelError as exc:
        raise ModelError(f"{where}: {exc}") from None
    except RecursionError:
        raise ModelError(f"{where}: the model's modules nest too deeply to walk") from None
    except KeyboardInterrupt:
        raise
    # the model's own code (sys.exit() in it too must not end `check` with exit 0), or a thread changing it
    except BaseException as exc:
        call, error = (exc.call, exc.error) if isinstance(exc, _ModelRaised) else ("", exc)
        if isinstance(error, RuntimeError) and "changed size during iteration" in str(error):
            raise ModelError(f"{where}: the model changed while lrrules read its parameters (another thread "
                             "adding or replacing modules?); resolve it while nothing else changes it") from None
        what = f"the model's own {call} failed" if call else "reading the model's parameters failed"
        raise ModelError(f"{where}: {what}: {type(error).__name__}: {_clip(str(error))}") from None


class _ModelRaised(Exception):
    """The model's own ``call`` (``named_modules()``) raised ``error``."""

    def __init__(self, call: str, error: BaseException) -> None:
        super().__init__(call)
        self.call = call
        self.error = error


def _clip(text: str, limit: int = 300) -> str:
    text = text.strip().splitlines()[0] if text.strip() else ""
    return text if len(text) <= limit else text[:limit] + "..."


def _collect(model: torch.nn.Module) -> tuple[list[ParamInfo], list[torch.nn.Parameter]]:
    from torch.nn.parameter import is_lazy

    from .roles import model_roles

    infos: list[ParamInfo] = []
    tensors: list[Any] = []
    position: dict[int, int] = {}  # id(tensor) -> its index
    extra: dict[int, list[tuple[str, Owner]]] = {}  # the other names of tensors met again, with their owners
    owners: dict[int, Owner] = {}  # id(module) -> what the rules see of it
    layouts: dict[tuple[str, ...], tuple[str, ...]] = {}
    new = tuple.__new__  # ParamInfo(...) without the named tuple's Python-level __new__: ~100k of them
    lazy: list[str] = []  # parameters a lazy module makes at its first forward pass
    inner = unwrap(model)
    _probe(inner)
    walk = _walk(inner)  # the one walk of the module tree; the roles read it too
    for prefix, module, holder in _holders(walk):
        owner = owners.get(id(holder))
        if owner is None:
            owner = owners[id(holder)] = (type(holder).__name__, _bases(type(holder)), _attributes(holder, layouts))
        for local, tensor in module._parameters.items():
            if tensor is None:
                continue
            name = prefix + local
            seen = position.get(id(tensor))
            if seen is not None:
                others = extra.setdefault(seen, [])
                if name != infos[seen].name and all(name != n for n, _ in others):
                    others.append((name, owner))
                continue
            try:
                shape = tuple(tensor.shape)
            except RuntimeError:
                if not is_lazy(tensor):
                    raise
                lazy.append(name)
                continue
            position[id(tensor)] = len(infos)
            infos.append(new(ParamInfo, (name, shape, owner[0], tensor.requires_grad, len(infos), (), *owner[1:], (), ())))
            tensors.append(tensor)
    if lazy:
        raise ModelError(f"{len(lazy)} parameter(s) do not exist yet ({', '.join(lazy[:5])}"
                         f"{', ...' if len(lazy) > 5 else ''}): a lazy module (nn.LazyLinear, nn.LazyConv2d...) "
                         "makes them at its first forward pass; run one forward pass (model(example_input)) "
                         "before resolving, so that their shapes are known")
    for i, others in extra.items():
        if others:
            mine = (infos[i].module, infos[i].bases, infos[i].attrs)
            infos[i] = infos[i]._replace(aliases=tuple(n for n, _ in others), alias_modules=tuple(
                o for _, o in others) if any(o != mine for _, o in others) else ())
    _refuse_one_name_for_two(infos)
    roles = model_roles(inner, infos, tensors, walk)
    return [new(ParamInfo, (*info[:-1], found)) for info, found in zip(infos, roles)], tensors


def _probe(model: Any) -> None:
    """Call the model's own ``named_parameters`` where it overrides it: fail here, named, not in the optimizer."""
    from torch.nn import Module

    for call in ("named_parameters", "parameters"):  # named_modules: _named_modules calls it, guarded
        if getattr(type(model), call, None) is not getattr(Module, call):
            try:
                for _ in getattr(model, call)():
                    pass
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                raise _ModelRaised(f"{call}()", exc) from None


def _refuse_one_name_for_two(infos: list[ParamInfo]) -> None:
    """Two tensors left with one name (an attribute called ``_orig_mod`` taken out) would get one setting."""
    names = [n for info in infos for n in info.names]
    if len(set(names)) == len(names):
        return
    seen: set[str] = set()
    twice = [n for n in names if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    raise ModelError(f"two different tensors are both named '{twice[0]}' once the name parts wrappers insert "
                     f"({', '.join(sorted(WRAPPER_PARTS))}, DDP's module) are taken out: a module of the model "
                     "has an attribute of one of those names that is not a wrapper; rename it")


def _walk(model: torch.nn.Module) -> list[tuple[str, Any]]:
    """The model's own ``named_modules(remove_duplicate=False)``, its failure named."""
    try:
        return list(model.named_modules(remove_duplicate=False))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise _ModelRaised("named_modules()", exc) from None


def _holders(walk: list[tuple[str, Any]]) -> Iterator[tuple[str, Any, Any]]:
    """``(name prefix, module, owner)`` for every module of ``walk`` holding parameters, wrapper parts left
    out; ``owner`` is the module itself, or for a parametrization's tensors the parametrized module."""
    from torch.nn.utils.parametrize import ParametrizationList

    by_name: dict[str, Any] = {}
    wrappers = set()  # paths of inner wrappers (MMEngine's MMSeparateDistributedDataParallel wraps each part)
    for module_name, module in walk:
        by_name.setdefault(module_name, module)
        kind = type(module)
        if module_name and _kinds(kind) & _ROOT_WRAPPERS:
            wrappers.add(module_name)
        if not module._parameters:
            continue
        owner = module
        if kind is ParametrizationList:  # `fc.parametrizations.weight`: the tensors are fc's
            path, _, middle = module_name.rpartition(".")[0].rpartition(".")
            owner = by_name.get(path, module) if middle == "parametrizations" else module
        if wrappers:
            parts = module_name.split(".")
            module_name = ".".join(p for i, p in enumerate(parts) if not (p == "module" and ".".join(parts[:i]) in wrappers))
        module_name = clean_name(module_name)
        yield module_name + "." if module_name else "", module, owner
