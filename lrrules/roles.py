"""What each parameter tensor *does* in its model: its roles, read from the model's structure.

A recipe such as Muon's split ("hidden matrices to Muon; embeddings, the head, gains and biases to
AdamW") or timm's weight-decay exclusions is defined by what a tensor does, and names differ in
every architecture family (``lm_head``, ``classifier``, ``fc``, ``score``, ``cls.predictions``). So
roles are decided from the model itself, each with the evidence that decided it:

``embedding``
    the input layer: the module ``get_input_embeddings()`` returns (Hugging Face), every
    ``nn.Embedding`` / ``nn.EmbeddingBag``, timm's ``pretrained_cfg['first_conv']`` (a ViT's patch
    embedding, a CNN's stem).
``head`` (also written ``output`` or ``unembedding``)
    the output layer: the module ``get_output_embeddings()`` returns and the task heads outside
    the base model (Hugging Face), timm's ``pretrained_cfg['classifier']``; for any other model the
    module holding the last parameter registered (what ``lrrules init`` takes as the head). Every
    tensor under that module counts, so peft's ``modules_to_save`` copy of a head and a head under
    ``weight_norm`` or a parametrization are still the head.
``norm``
    the parameters of a norm module: ``isinstance`` of torch's LayerNorm, GroupNorm, BatchNorm,
    InstanceNorm, RMSNorm, or a module whose class (or a base) is named ``...Norm...`` and whose own
    tensors are all 1-D (Hugging Face's ``LlamaRMSNorm``, ``T5LayerNorm``, timm's ``RmsNorm``).
``bias``
    a 1-D tensor registered on its module as ``bias`` or ``..._bias`` (``in_proj_bias``).
``position``
    position embeddings and tables, class tokens: what the model's ``no_weight_decay()`` lists (timm:
    ``pos_embed``, ``cls_token``, relative-position tables and their MLPs, attention-bias tables on
    every timm family checked), and, where the structure cannot tell, a name part such as ``wpe``,
    ``position_embeddings``, ``embed_positions``, ``relative_attention_bias``, ``rel_pos_h``.
``no_weight_decay``
    listed by the model's own ``no_weight_decay()`` (timm's contract with ``create_optimizer_v2``).
``hidden``
    a tensor of 2 or more dimensions that is none of embedding, head, position and norm: the
    matrices inside the blocks (GPT-2's ``Conv1D`` weights, stored ``(in, out)``, count as they are).

A tensor may have several roles: a tied embedding and head has both, a head's LayerNorm is head and
norm. Where only names and shapes are known (a checkpoint), only ``bias`` can be decided (from the
tensor's last name part); a rule asking for another role there is refused with a message.

>>> import torch
>>> infos, tensors = collect(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)))  # doctest: +SKIP
>>> [sorted(role for role, _ in p.roles) for p in infos]                                          # doctest: +SKIP
[['hidden'], ['bias'], ['head'], ['bias', 'head']]
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Sequence
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
_NORM_CLASS = re.compile(r"Norm")


def canonical(role: str) -> str:
    """``output`` -> ``head``; a role's own name stays."""
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
    tensors themselves, as :func:`lrrules.params.collect` returns them)."""
    from torch import nn

    position = {id(t): i for i, t in enumerate(tensors)}
    found: list[dict[str, str]] = [{} for _ in infos]

    def mark(module: Any, role: str, why: str) -> None:  # every tensor under ``module``, its children's too
        _mark_own(list(module.parameters()), position, found, role, why)

    # Each walks the whole module tree: found once, read by the heads, the inputs and no_weight_decay().
    hf, timm = _hf_model(model), _timm_model(model)
    for module, why in _heads(model, hf, timm):
        mark(module, "head", why)
    for module, why in _inputs(hf, timm):
        mark(module, "embedding", why)
    norms = tuple(k for k in (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, getattr(nn, "RMSNorm", None),
                              nn.LocalResponseNorm) if k is not None)
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            mark(module, "embedding", f"an nn.{'Embedding' if isinstance(module, nn.Embedding) else 'EmbeddingBag'}")
            if _POSITION_PART.fullmatch(module_name.rsplit(".", 1)[-1]):
                mark(module, "position", f"an embedding named '{module_name.rsplit('.', 1)[-1]}'")
        own = [t for t in module._parameters.values() if t is not None]
        if not own:
            continue
        if isinstance(module, norms):
            torch_class = next(k.__name__ for k in type(module).__mro__ if k.__module__.startswith("torch.nn"))
            _mark_own(own, position, found, "norm", f"its module is an nn.{torch_class} (isinstance)")
        elif all(t.ndim <= 1 for t in own) and any(_NORM_CLASS.search(k.__name__) for k in _classes(module)):
            named = next(k.__name__ for k in _classes(module) if _NORM_CLASS.search(k.__name__))
            _mark_own(own, position, found, "norm", f"its module's class {named} is a norm (1-D gains)")
        for local, tensor in module._parameters.items():
            if tensor is None:
                continue
            i = position.get(id(tensor))
            if i is None:
                continue
            if _is_bias(local, tensor.ndim):
                found[i].setdefault("bias", f"1-D, registered as '{local}' on a {type(module).__name__}")
            if _POSITION_PART.fullmatch(local):
                found[i].setdefault("position", f"a tensor named '{local}'")
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


def _mark_own(own: Sequence[Any], position: dict[int, int], found: list[dict[str, str]], role: str, why: str) -> None:
    """Give ``role`` to the module's own tensors ``own`` (not to those of its children)."""
    for tensor in own:
        i = position.get(id(tensor))
        if i is not None:
            found[i].setdefault(role, why)


def _classes(module: Any) -> Iterator[type]:
    for kind in type(module).__mro__:
        if kind.__name__ in ("Module", "object"):
            return
        yield kind


def _hf_model(model: Any) -> Any:
    """The outermost Hugging Face model (``PreTrainedModel``) in ``model``: itself, or the one a peft
    wrapper holds."""
    for module in model.modules():
        if any(k.__name__ == "PreTrainedModel" for k in type(module).__mro__):
            return module
    return None


def _timm_model(model: Any) -> tuple[Any, dict[str, Any]] | None:
    """The outermost module timm built and its ``pretrained_cfg`` (or older ``default_cfg``)."""
    for module in model.modules():
        cfg = vars(module).get("pretrained_cfg") or vars(module).get("default_cfg")
        if isinstance(cfg, dict):
            return module, cfg
    return None


def _submodules(root: Any, names: Any) -> Iterator[tuple[str, Any]]:
    for name in names if isinstance(names, (list, tuple)) else [names]:
        if not isinstance(name, str) or not name:
            continue
        try:
            yield name, root.get_submodule(name)
        except AttributeError:
            continue


def _heads(model: torch.nn.Module, hf: Any, timm: tuple[Any, dict[str, Any]] | None) -> list[tuple[Any, str]]:
    """The output modules, each with the evidence for it (``hf``, ``timm``: what :func:`_hf_model`
    and :func:`_timm_model` found in ``model``)."""
    if hf is not None:
        heads = []
        output = _call(hf, "get_output_embeddings")
        if output is not None:
            heads.append((output, "the module get_output_embeddings() returns"))
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
    last = None
    for last in model.named_parameters(remove_duplicate=False):
        pass
    if last is None or "." not in last[0]:
        return []
    owner_name = holder(last[0])
    owner = model.get_submodule(owner_name)
    if sum(1 for _ in owner.parameters()) == sum(1 for _ in model.parameters()):
        return []  # a "head" that is the whole model is no head
    return [(owner, f"'{owner_name}' holds the last parameter registered (no Hugging Face or timm head to read)")]


def _inputs(hf: Any, timm: tuple[Any, dict[str, Any]] | None) -> list[tuple[Any, str]]:
    """The input modules (beyond every nn.Embedding), each with the evidence for it."""
    if hf is not None:
        found = _call(hf, "get_input_embeddings")
        return [] if found is None else [(found, "the module get_input_embeddings() returns")]
    if timm is not None:
        root, cfg = timm
        return [(module, f"timm's pretrained_cfg['first_conv'] names '{name}' (the input layer)")
                for name, module in _submodules(root, cfg.get("first_conv"))]
    return []


def _call(model: Any, method: str) -> Any:
    """``model.method()``, or ``None`` where the model has no such module (HF raises NotImplementedError)."""
    import torch

    try:
        found = getattr(model, method)()
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001  the model's own hook: a failure means only that it names no module
        return None
    return found if isinstance(found, torch.nn.Module) else None


def _no_weight_decay(model: torch.nn.Module, timm: tuple[Any, dict[str, Any]] | None,
                     infos: Sequence[ParamInfo]) -> Iterator[tuple[int, str]]:
    """``(index, pattern)`` for each parameter the model's ``no_weight_decay()`` lists, matched as
    timm's ``create_optimizer_v2`` matches them (``fnmatch`` over the parameter's name)."""
    owner = timm[0] if timm is not None else model
    hook = getattr(owner, "no_weight_decay", None)
    if not callable(hook):
        return
    try:
        listed = sorted({str(entry) for entry in hook()})
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001  the model's own hook: a failure means only that there is no list
        return
    if not listed:
        return
    # timm matches the names it sees, those of the module that has the hook.
    prefix = next((name + "." for name, m in model.named_modules() if m is owner and name), "")
    for i, info in enumerate(infos):
        for name in info.names:
            local = name[len(prefix):] if prefix and name.startswith(prefix) else name
            hit = next((p for p in listed if fnmatch.fnmatchcase(local, p)), None)
            if hit is not None:
                yield i, hit
                break


def describe(info: ParamInfo) -> str:
    """The parameter's roles and why, for ``explain``:
    ``head (the module get_output_embeddings() returns); bias (...)``."""
    text = "; ".join(f"{role} ({why})" for role, why in info.roles)
    if info.module is None:
        return (text + "; " if text else "") + f"the others undecided (a checkpoint: names and shapes decide only " \
            f"{', '.join(sorted(NAME_ROLES))})"
    return text or "none (a 0-D or 1-D tensor that is no bias, norm or position entry)"
