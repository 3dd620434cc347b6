"""What each parameter tensor *does* in its model: its roles, read from the model's structure.

A recipe such as Muon's split ("hidden matrices to Muon; embeddings, the head, gains and biases to
AdamW") is defined by what a tensor does, and names differ in every family (``lm_head``,
``classifier``, ``fc``, ``score``), so each role is decided from the model itself, with the evidence
that decided it: ``embedding``, ``head`` (also ``output``, ``unembedding``), ``norm``, ``bias``,
``position``, ``no_weight_decay`` and ``hidden``; docs/language.md#roles says by which evidence. A
tensor may have several roles. From names and shapes alone (a checkpoint) only ``bias`` is decided.
"""

from __future__ import annotations

import fnmatch
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
    """The module path holding parameter ``name``; for a parametrization's tensor, the parametrized
    module's, not the bookkeeping module torch puts between them (DINO's head under ``weight_norm``).

    >>> holder("head.fc.parametrizations.weight.original0"), holder("head.fc.weight_g")
    ('head.fc', 'head.fc')
    """
    parts = name.split(".")[:-1]
    if "parametrizations" in parts[:-1]:
        parts = parts[:parts.index("parametrizations")]
    return ".".join(parts)


def model_roles(model: torch.nn.Module, infos: Sequence[ParamInfo], tensors: Sequence[Any]) -> list[tuple[Role, ...]]:
    """Each parameter's roles with their evidence, in the order of ``infos`` (``tensors`` the
    tensors themselves, as :func:`lrrules.params.collect` returns them).

    >>> from torch import nn
    >>> from lrrules.params import collect
    >>> model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    >>> [[role for role, _ in roles] for roles in model_roles(model, *collect(model))]
    [['hidden'], ['bias'], ['head'], ['head', 'bias']]
    """
    from torch import nn

    position = {id(t): i for i, t in enumerate(tensors)}
    found: list[dict[str, str]] = [{} for _ in infos]

    def mark(own: Any, role: str, why: str) -> None:
        for i in (position.get(id(t)) for t in own):
            if i is not None:
                found[i].setdefault(role, why)

    # Each walks the whole module tree: found once, read by the heads, the inputs and no_weight_decay().
    hf, timm = _hf_model(model), _timm_model(model)
    for module, why in _heads(model, hf, timm):
        mark(module.parameters(), "head", why)  # every tensor under it, its children's too
    for module, why in _inputs(hf, timm):
        mark(module.parameters(), "embedding", why)
    norms = tuple(k for k in (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, getattr(nn, "RMSNorm", None),
                              nn.LocalResponseNorm) if k is not None)
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            mark(module.parameters(), "embedding", f"an nn.{'Embedding' if isinstance(module, nn.Embedding) else 'EmbeddingBag'}")
            if _POSITION_PART.fullmatch(module_name.rsplit(".", 1)[-1]):
                mark(module.parameters(), "position", f"an embedding named '{module_name.rsplit('.', 1)[-1]}'")
        own = {local: t for local, t in module._parameters.items() if t is not None}
        classes = takewhile(lambda k: k.__name__ not in ("Module", "object"), type(module).__mro__)
        named = next((k.__name__ for k in classes if "Norm" in k.__name__), None)
        if own and isinstance(module, norms):
            torch_class = next(k.__name__ for k in type(module).__mro__ if k.__module__.startswith("torch.nn"))
            mark(own.values(), "norm", f"its module is an nn.{torch_class} (isinstance)")
        elif own and named and all(t.ndim <= 1 for t in own.values()):
            mark(own.values(), "norm", f"its module's class {named} is a norm (1-D gains)")
        for local, tensor in own.items():
            if _is_bias(local, tensor.ndim):
                mark([tensor], "bias", f"1-D, registered as '{local}' on a {type(module).__name__}")
            if _POSITION_PART.fullmatch(local):
                mark([tensor], "position", f"a tensor named '{local}'")
    for i, patterns in _no_weight_decay(model, timm, infos):
        found[i].setdefault("no_weight_decay", f"the model's no_weight_decay() lists '{patterns}'")
        found[i].setdefault("position", f"the model's no_weight_decay() lists '{patterns}'")
    out = []
    for info, roles in zip(infos, found):
        # A tensor with fewer than two dimensions wider than 1 is a vector in matrix form (weight_norm's
        # magnitude g of shape (out, 1), a (1, d) gain): a gain, not a hidden matrix (Muon leaves it to AdamW).
        wide = sum(1 for d in info.shape if d > 1)
        if info.ndim >= 2 and wide >= 2 and not roles.keys() & {"embedding", "head", "position", "norm"}:
            kind = info.module or "module"
            layout = " (stored (in, out))" if kind == "Conv1D" else ""
            roles["hidden"] = f"a {info.ndim}-D tensor of a {kind}{layout}, neither embedding, head, position nor norm"
        out.append(tuple((r, roles[r]) for r in ROLES if r in roles))
    return out


def _hf_model(model: Any) -> Any:
    """The outermost Hugging Face model (``PreTrainedModel``) in ``model``: itself, or the one a peft
    wrapper holds."""
    return next((m for m in model.modules() if any(k.__name__ == "PreTrainedModel" for k in type(m).__mro__)), None)


def _timm_model(model: Any) -> tuple[Any, dict[str, Any]] | None:
    """The outermost module timm built and its ``pretrained_cfg`` (or older ``default_cfg``)."""
    found = ((m, vars(m).get("pretrained_cfg") or vars(m).get("default_cfg")) for m in model.modules())
    return next(((m, cfg) for m, cfg in found if isinstance(cfg, dict)), None)


def _submodules(root: Any, names: Any) -> Iterator[tuple[str, Any]]:
    for name in names if isinstance(names, (list, tuple)) else [names]:
        if isinstance(name, str) and name:
            with suppress(AttributeError):
                yield name, root.get_submodule(name)


def _heads(model: torch.nn.Module, hf: Any, timm: tuple[Any, dict[str, Any]] | None) -> list[tuple[Any, str]]:
    """The output modules, each with the evidence for it (``hf``, ``timm``: what :func:`_hf_model`
    and :func:`_timm_model` found in ``model``)."""
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
    names = [name for name, _ in model.named_parameters(remove_duplicate=False)]
    if not names or "." not in names[-1]:
        return []
    owner_name = holder(names[-1])
    owner = model.get_submodule(owner_name)
    if sum(1 for _ in owner.parameters()) == sum(1 for _ in model.parameters()):
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


def _no_weight_decay(model: torch.nn.Module, timm: tuple[Any, dict[str, Any]] | None,
                     infos: Sequence[ParamInfo]) -> Iterator[tuple[int, str]]:
    """``(index, pattern)`` for each parameter the model's ``no_weight_decay()`` lists, matched as
    timm's ``create_optimizer_v2`` matches them (``fnmatch`` over the parameter's name)."""
    owner = timm[0] if timm is not None else model
    found = _ask(owner, "no_weight_decay")
    listed = sorted({str(entry) for entry in found}) if isinstance(found, (set, frozenset, list, tuple)) else []
    # timm matches the names it sees, those of the module that has the hook.
    prefix = next((name + "." for name, m in model.named_modules() if m is owner and name), "") if listed else ""
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
