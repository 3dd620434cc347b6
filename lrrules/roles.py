"""What each parameter tensor *does* in its model, read from the model's structure, with the evidence.

Muon's split ("hidden matrices to Muon; embeddings, the head, gains and biases to AdamW") is defined
by what a tensor does, and names differ in every family (``lm_head``, ``classifier``, ``fc``), so the
roles (docs/language.md#roles) come from the model; from names and shapes alone only ``bias``.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterator, Sequence
from contextlib import suppress
from itertools import takewhile
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .params import ParamInfo

#: Every role a rule may ask for, in the order reports list them.
ROLES = ("embedding", "head", "hidden", "norm", "bias", "position", "no_weight_decay")
#: Other names a rule may use for a role.
ALIASES = {"output": "head", "unembedding": "head"}
#: The roles that names and shapes alone decide (a checkpoint).
NAME_ROLES = frozenset({"bias"})
#: One role of a tensor and the evidence for it, such as ``("head", "get_output_embeddings()")``.
Role = tuple[str, str]

_POSITION_PART = re.compile(
    r"(wpe|cls_token|dist_token|reg_token|embed_positions|position_embeddings?|pos_embed\w*|pos_emb\w*"
    r"|absolute_pos_embed|relative_position\w*|relative_attention_bias|rel_pos\w*)")


def canonical(role: str) -> str:
    """A role's own name for one of its other names.

    >>> canonical("output"), canonical("norm")
    ('head', 'norm')
    """
    return ALIASES.get(role, role)


def _is_bias(local: str, ndim: int) -> bool:
    return ndim == 1 and (local == "bias" or local.endswith("_bias"))


def name_roles(name: str, shape: tuple[int, ...]) -> tuple[Role, ...]:
    """The roles that a name and a shape decide, for a checkpoint (no modules): ``bias`` only.

    >>> name_roles("encoder.layer.0.output.dense.bias", (768,))
    (('bias', "1-D, named 'bias' (by name: a checkpoint)"),)
    """
    local = name.rsplit(".", 1)[-1]
    if _is_bias(local, len(shape)):
        return (("bias", f"1-D, named '{local}' (by name: a checkpoint)"),)
    return ()


def holder(name: str) -> str:
    """The module path holding parameter ``name``; a parametrization's tensor's is the parametrized module's.

    >>> holder("head.fc.parametrizations.weight.original0"), holder("head.fc.weight_g")
    ('head.fc', 'head.fc')
    """
    parts = name.split(".")[:-1]
    if "parametrizations" in parts[:-1]:
        parts = parts[:parts.index("parametrizations")]
    return ".".join(parts)


def model_roles(model: torch.nn.Module, infos: Sequence[ParamInfo], tensors: Sequence[Any],
                walk: Sequence[tuple[str, Any]] | None = None) -> list[tuple[Role, ...]]:
    """Each parameter's roles with their evidence, in the order of ``infos`` and ``tensors`` (as
    :func:`lrrules.params.collect` gives them); ``walk``: the ``named_modules(remove_duplicate=False)``
    that collect read, so that the tree is walked once.

    >>> from torch import nn
    >>> from lrrules.params import collect
    >>> model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    >>> [[role for role, _ in roles] for roles in model_roles(model, *collect(model))]
    [['hidden'], ['bias'], ['head'], ['head', 'bias']]
    """
    walk = list(model.named_modules(remove_duplicate=False)) if walk is None else walk
    position = {id(t): i for i, t in enumerate(tensors)}
    found: dict[int, dict[str, str]] = {}

    def mark(own: Any, role: str, why: str) -> None:
        for i in (position.get(id(t)) for t in own):
            if i is not None:
                found.setdefault(i, {}).setdefault(role, why)

    hf, timm = _hf_model(walk), _timm_model(walk)
    for module, why in _heads(walk, hf, timm, len(tensors)):
        mark(module.parameters(), "head", why)  # every tensor under it, its children's too
    for module, why in _inputs(hf, timm):
        mark(module.parameters(), "embedding", why)
    kinds: dict[type, tuple[str | None, str | None, str | None]] = {}
    for module_name, module in walk:
        own = [(local, t) for local, t in module._parameters.items() if t is not None]
        if not own:
            continue
        kind = type(module)
        embedding, norm, named = kinds.get(kind) or kinds.setdefault(kind, _kind(kind))
        if embedding:
            mark(module.parameters(), "embedding", embedding)
            if _is_position(last := module_name.rsplit(".", 1)[-1]):
                mark(module.parameters(), "position", f"an embedding named '{last}'")
        if norm or (named and all(t.ndim <= 1 for _, t in own)):
            mark((t for _, t in own), "norm", norm or f"its module's class {named} is a norm (1-D gains)")
        for local, tensor in own:
            if _is_bias(local, tensor.ndim):
                mark([tensor], "bias", f"1-D, registered as '{local}' on a {kind.__name__}")
            if _is_position(local):
                mark([tensor], "position", f"a tensor named '{local}'")
    for i, patterns in _no_weight_decay(walk, timm, infos):
        found.setdefault(i, {}).setdefault("no_weight_decay", f"the model's no_weight_decay() lists '{patterns}'")
        found[i].setdefault("position", f"the model's no_weight_decay() lists '{patterns}'")
    return _ordered(infos, found)


@functools.lru_cache(maxsize=4096)
def _is_position(local: str) -> bool:
    return _POSITION_PART.fullmatch(local) is not None


def _ordered(infos: Sequence[ParamInfo], found: dict[int, dict[str, str]]) -> list[tuple[Role, ...]]:
    """Each tensor's roles in :data:`ROLES` order, ``hidden`` added; equal role sets share one tuple."""
    out: list[tuple[Role, ...]] = []
    shared: dict[tuple[tuple[str, str], ...], tuple[Role, ...]] = {}
    for i, info in enumerate(infos):
        roles = found.get(i, {})
        # A tensor with fewer than two dimensions wider than 1 is a vector in matrix form (weight_norm's
        # magnitude g of shape (out, 1), a (1, d) gain): a gain, not a hidden matrix (Muon leaves it to AdamW).
        if info.ndim >= 2 and not roles.keys() & _NOT_HIDDEN and sum(d > 1 for d in info.shape) >= 2:
            layout = " (stored (in, out))" if info.module == "Conv1D" else ""
            roles["hidden"] = (f"a {info.ndim}-D tensor of a {info.module or 'module'}{layout}, neither embedding, "
                               "head, position nor norm")
        key = tuple(roles.items())
        out.append(shared.get(key) or shared.setdefault(key, tuple((r, roles[r]) for r in ROLES if r in roles)))
    return out


_NOT_HIDDEN = frozenset({"embedding", "head", "position", "norm"})


def _kind(kind: type) -> tuple[str | None, str | None, str | None]:
    """What a module class says of its tensors: the embedding evidence, the norm evidence by
    ``isinstance``, the name of a class of its own named like a norm."""
    from torch import nn

    norms = tuple(k for k in (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, getattr(nn, "RMSNorm", None),
                              nn.LocalResponseNorm) if k is not None)
    embedding = next((f"an nn.{k.__name__}" for k in (nn.Embedding, nn.EmbeddingBag) if issubclass(kind, k)), None)
    torch_class = next(k.__name__ for k in kind.__mro__ if k.__module__.startswith("torch.nn"))
    norm = f"its module is an nn.{torch_class} (isinstance)" if issubclass(kind, norms) else None
    classes = takewhile(lambda k: k.__name__ not in ("Module", "object"), kind.__mro__)
    return embedding, norm, next((k.__name__ for k in classes if "Norm" in k.__name__), None)


def _hf_model(walk: Sequence[tuple[str, Any]]) -> Any:
    """The outermost Hugging Face model (``PreTrainedModel``) in the walk: the model, or the one a
    peft wrapper holds."""
    kinds: dict[type, bool] = {}
    for _, m in walk:
        kind = type(m)
        hit = kinds.get(kind)
        if hit is None:
            hit = kinds[kind] = any(k.__name__ == "PreTrainedModel" for k in kind.__mro__)
        if hit:
            return m
    return None


def _timm_model(walk: Sequence[tuple[str, Any]]) -> tuple[Any, dict[str, Any]] | None:
    """The outermost module timm built and its ``pretrained_cfg`` (or older ``default_cfg``)."""
    found = ((m, vars(m).get("pretrained_cfg") or vars(m).get("default_cfg")) for _, m in walk)
    return next(((m, cfg) for m, cfg in found if isinstance(cfg, dict)), None)


def _submodules(root: Any, names: Any) -> Iterator[tuple[str, Any]]:
    for name in names if isinstance(names, (list, tuple)) else [names]:
        if isinstance(name, str) and name:
            with suppress(AttributeError):
                yield name, root.get_submodule(name)


def _heads(walk: Sequence[tuple[str, Any]], hf: Any, timm: tuple[Any, dict[str, Any]] | None,
           count: int) -> list[tuple[Any, str]]:
    """The output modules, each with the evidence for it (``hf``, ``timm``: what :func:`_hf_model`
    and :func:`_timm_model` found; ``count``: how many tensors the model has)."""
    if hf is not None:
        output = _module(hf, "get_output_embeddings")
        heads = [] if output is None else [(output, "the module get_output_embeddings() returns")]
        base = getattr(type(hf), "base_model_prefix", "")
        inner = getattr(hf, base, None) if base and base in hf._modules else None
        if inner is not None:
            heads += [(child, f"'{name}' lies outside the base model '{base}' (a task head)")
                      for name, child in hf.named_children()
                      if child is not inner and any(True for _ in child.parameters())]
        return heads
    if timm is not None:
        root, cfg = timm
        return [(module, f"timm's pretrained_cfg['classifier'] names '{name}'")
                for name, module in _submodules(root, cfg.get("classifier"))]
    # the last parameter registered (named_parameters(remove_duplicate=False)'s last name)
    last = next(((n, m) for n, m in reversed(walk) if any(t is not None for t in m._parameters.values())), None)
    if last is None or not last[0]:
        return []
    owner_name = holder(last[0] + ".w")
    owner = walk[0][1].get_submodule(owner_name)
    if sum(1 for _ in owner.parameters()) == count:
        return []  # a "head" that is the whole model is no head
    return [(owner, f"'{owner_name}' holds the last parameter registered (no Hugging Face or timm head to read)")]


def _inputs(hf: Any, timm: tuple[Any, dict[str, Any]] | None) -> list[tuple[Any, str]]:
    """The input modules (beyond every nn.Embedding), each with the evidence for it."""
    if hf is not None:
        found = _module(hf, "get_input_embeddings")
        return [] if found is None else [(found, "the module get_input_embeddings() returns")]
    if timm is not None:
        root, cfg = timm
        return [(module, f"timm's pretrained_cfg['first_conv'] names '{name}' (the input layer)")
                for name, module in _submodules(root, cfg.get("first_conv"))]
    return []


def _ask(owner: Any, method: str) -> Any:
    """``owner.method()``, or ``None`` where it has none or it fails: the model's own hook, whose
    failure means only that it names nothing (Hugging Face raises NotImplementedError)."""
    hook = getattr(owner, method, None)
    try:
        return hook() if callable(hook) else None
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001
        return None


def _module(owner: Any, method: str) -> Any:
    import torch

    found = _ask(owner, method)
    return found if isinstance(found, torch.nn.Module) else None


def _no_weight_decay(walk: Sequence[tuple[str, Any]], timm: tuple[Any, dict[str, Any]] | None,
                     infos: Sequence[ParamInfo]) -> Iterator[tuple[int, str]]:
    """``(index, pattern)`` for each parameter the model's ``no_weight_decay()`` lists, matched as
    timm's ``create_optimizer_v2`` matches them (``fnmatch`` over the parameter's name)."""
    owner = timm[0] if timm is not None else walk[0][1]
    found = _ask(owner, "no_weight_decay")
    listed = sorted({str(entry) for entry in found}) if isinstance(found, (set, frozenset, list, tuple)) else []
    # timm matches the names it sees, those of the module that has the hook.
    prefix = next((name + "." for name, m in walk if m is owner and name), "") if listed else ""
    for i, info in enumerate(infos if listed else ()):
        for name in info.names:
            local = name[len(prefix):] if prefix and name.startswith(prefix) else name
            hit = next((p for p in listed if fnmatch.fnmatchcase(local, p)), None)
            if hit is not None:
                yield i, hit
                break


def describe(info: ParamInfo) -> str:
    """The parameter's roles and why, for ``explain``: ``head (the module ...); bias (...)``."""
    text = "; ".join(f"{role} ({why})" for role, why in info.roles)
    if info.module is None:
        return (text + "; " if text else "") + f"the others undecided (a checkpoint: names and shapes decide only " \
            f"{', '.join(sorted(NAME_ROLES))})"
    return text or "none (a 0-D or 1-D tensor that is no bias, norm or position entry)"
