"""Layer indices for the formula variables ``layer``, ``num_layers`` and ``depth`` (0 nearest the
input): one function per strategy of ``layers:``, one index per parameter (``None``: none) and the count."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from .errors import LayerError, MatchError
from .fields import BlocksLayers, ModuleLayers, PatternLayers, TensorLayers, TimmLayers
from .matching import Matcher, compile_matcher
from .params import ParamInfo, clean_name, unwrap

if TYPE_CHECKING:
    import torch

Layering = tuple[list[int | None], int]


@runtime_checkable
class KnownLayers(Protocol):
    """timm's layer map already computed, as a model-source cache entry keeps it (no module, no torch)."""

    @property
    def timm_layer_map(self) -> Mapping[str, int]: ...
    @property
    def timm_layer_count(self) -> int: ...


def assign(spec: Any, params: Sequence[ParamInfo], model: torch.nn.Module | KnownLayers | None = None,
           ordered: bool = True, matchers: Sequence[Matcher] | None = None) -> Layering:
    """Each parameter's layer index under ``spec``, and the number of layers; ``ordered=False`` (a
    safetensors checkpoint, sorted by name) refuses a strategy that counts in registration order.

    >>> assign(ModuleLayers(by="module"), params)    # doctest: +SKIP
    ([0, 0, 1, 1], 2)
    """
    if not ordered and isinstance(spec, (TensorLayers, ModuleLayers, BlocksLayers)):
        raise LayerError(unordered(f"layers 'by: {spec.by}'"))
    if isinstance(spec, TensorLayers):
        return [p.index for p in params], len(params)
    if isinstance(spec, ModuleLayers):
        return by_module(params, spec.level)
    if isinstance(spec, PatternLayers):
        return by_patterns(params, spec.patterns, matchers)
    if isinstance(spec, TimmLayers):
        if model is None:
            raise LayerError("layers 'by: timm' needs the model itself, not only its parameter names (a "
                             "checkpoint has none): give the model's name, or count layers by module or patterns")
        return by_timm(params, model)
    if isinstance(spec, BlocksLayers):
        return by_blocks(params)
    raise TypeError(f"unknown layer strategy {spec!r}")


def unordered(what: str) -> str:
    """The message refusing ``what`` on parameters that are not in the model's order."""
    return (f"{what} counts parameters in the model's order, and this source does not keep it (a safetensors "
            "file stores tensors sorted by name, so the order would be alphabetical); give the model instead "
            "(a timm name, hf:CONFIG_DIR, torchvision:NAME or module:factory), a .pt state dict, or "
            "'layers: {by: patterns, ...}', which needs no order")


def by_module(params: Sequence[ParamInfo], level: int) -> Layering:
    numbers: dict[str, int] = {}  # the owning module's path, cut to `level` parts -> its layer
    layers: list[int | None] = [numbers.setdefault(".".join(p.name.split(".")[:-1][:level]), len(numbers))
                                for p in params]
    return layers, len(numbers)


def by_patterns(params: Sequence[ParamInfo], patterns: Sequence[Any],
                matchers: Sequence[Matcher] | None = None) -> Layering:
    matchers = matchers or [compile_matcher(m) for m in patterns]
    return [_first_match(matchers, p) for p in params], len(matchers)


def _first_match(matchers: Sequence[Matcher], param: ParamInfo) -> int | None:
    for i, matcher in enumerate(matchers):
        try:
            if matcher.match(param) is not None:
                return i
        except MatchError as exc:
            raise MatchError(exc.message, exc.what, (i,)) from None
    return None


def by_timm(params: Sequence[ParamInfo], model: torch.nn.Module | KnownLayers) -> Layering:
    """timm's layer map as ``param_groups_layer_decay`` builds it (``group_matcher``, else timm's
    fallback); parameters outside the map in the last layer, as timm does."""
    if isinstance(model, KnownLayers):  # a model-source cache entry (sources/cache.py)
        count = model.timm_layer_count
        return [model.timm_layer_map.get(p.name, count - 1) for p in params], count
    from timm.models import group_parameters
    import timm.optim

    inner: Any = unwrap(model)
    if hasattr(inner, "group_matcher"):
        raw = group_parameters(inner, inner.group_matcher(coarse=False), reverse=True)
    else:
        raw = cast(Any, timm.optim).auto_group_layers(inner)  # neither exported by name nor annotated in timm
    layer_map: dict[str, int] = {clean_name(name): layer for name, layer in raw.items()}
    count = max(layer_map.values(), default=0) + 1
    return [layer_map.get(p.name, count - 1) for p in params], count


# --- by: blocks --------------------------------------------------------------------------------
#
# Any model, from its parameter names: find the stacks of repeated blocks (the numbered children
# of a ModuleList or Sequential that look alike: `encoder.layer.N`, `model.layers.N`, `blocks.N`),
# number their blocks from the input side, put what comes before them (embeddings, stem) first and
# what comes after (final norm, pooler, head) last. A block that holds a stack of its own
# (`stages.N.blocks.M`) becomes its blocks, plus what comes before and after them in it. Stacks
# under one parent (ResNet's layer1..layer4) are one sequence; stacks under different parents (T5's
# encoder and decoder, CLIP's two towers) are separate towers, aligned at their output ends so that
# `depth` (blocks from the output) means the same in each.

#: Two numbered children are alike when this share of their (normalised) parameter names is common.
_ALIKE = 0.5
#: A tower smaller than this share of the largest one holds no blocks of its own (a small MLP head).
_MIN_TOWER = 0.1
#: A stack holding less than this share of the model's elements is a detail inside a block, not its blocks.
_MIN_STACK = 0.1
_NUMBERED = re.compile(r"(.*?)(\d+)")


def _signature(rest: Sequence[tuple[str, int]]) -> frozenset[tuple[str, int]]:
    """What a block looks like: its parameters' names below it, numbers masked, with their ndim."""
    return frozenset((".".join("#" if s.isdigit() else s for s in r.split(".")), nd) for r, nd in rest)


Stack = tuple[tuple[str, ...], str]  # the container's path and the stem of its children's names


def _numbered(part: str) -> tuple[str, int] | None:
    """``'3'`` -> ``('', 3)``, ``'layer3'`` -> ``('layer', 3)``, ``'conv2_1'`` -> ``('conv2_', 1)``."""
    match = _NUMBERED.fullmatch(part)
    return (match[1], int(match[2])) if match else None


def _stacks(params: Sequence[ParamInfo], inside: int, nested: bool = False) -> dict[Stack, dict[int, list[int]]]:
    """The shallowest containers below the first ``inside`` name parts whose numbered children look
    alike: (container path, stem) -> block number -> positions in ``params``. ``nested``: only
    containers reached through named (not numbered) modules, so a block's own Sequential is none."""
    children: dict[Stack, dict[int, list[int]]] = {}
    holding: set[tuple[Stack, int]] = set()  # the children that hold modules, not only tensors
    for pos, p in enumerate(params):
        parts = p.name.split(".")[:-1]
        for k in range(inside, len(parts)):
            numbered = _numbered(parts[k])
            if numbered is not None:
                key = (tuple(parts[:k]), numbered[0])
                children.setdefault(key, {}).setdefault(numbered[1], []).append(pos)
                if len(parts) > k + 1:
                    holding.add((key, numbered[1]))
                if nested:  # a block's own blocks are its first numbered children (`s1.b1`, not `s1.b1.conv1`)
                    break
    found: dict[Stack, dict[int, list[int]]] = {}
    for (path, stem) in sorted(children, key=lambda c: len(c[0])):
        blocks = children[(path, stem)]
        # `layer3` or `encoder_layer_3` is a block only when it holds modules (`bn1`, `norm2` are
        # not), and so is a block inside a block (`mlp.0`, a Linear in a Sequential, is not)
        if (stem or nested) and any(((path, stem), b) not in holding for b in blocks):
            continue
        if len(blocks) < 2 or any(_inside_block(path, f, fs) for f, fs in found):
            continue
        depth = len(path) + 1
        sigs = [_signature([(".".join(params[i].name.split(".")[depth:]), params[i].ndim) for i in members])
                for members in blocks.values()]
        if any(len(a & b) >= _ALIKE * len(a | b) for n, a in enumerate(sigs) for b in sigs[n + 1 :]):
            found[(path, stem)] = blocks
    return found


def _inside_block(path: tuple[str, ...], container: tuple[str, ...], stem: str) -> bool:
    """Whether ``path`` lies inside one of the blocks of the stack (``container``, ``stem``)."""
    if len(path) <= len(container) or path[: len(container)] != container:
        return False
    numbered = _numbered(path[len(container)])
    return numbered is not None and numbered[0] == stem


def _units(params: Sequence[ParamInfo], blocks: dict[int, list[int]], path: tuple[str, ...]) -> list[list[int]]:
    """A stack's blocks in order, each split into the blocks of a stack holding most of it (and what is around them)."""
    out: list[list[int]] = []
    for number in sorted(blocks, key=lambda b: min(blocks[b])):
        members = blocks[number]
        inner = _stacks([params[i] for i in members], len(path) + 1, nested=True)
        total = sum(params[i].numel for i in members) or 1
        held = {j for b in inner.values() for ms in b.values() for j in ms}
        if not inner or sum(params[members[j]].numel for j in held) * 2 < total:
            out.append(members)
            continue
        first = min(held)
        out.append([members[j] for j in range(len(members)) if j not in held and j < first])
        for sub in sorted(inner.values(), key=lambda b: min(min(ms) for ms in b.values())):
            for number2 in sorted(sub, key=lambda b: min(sub[b])):
                out.append([members[j] for j in sub[number2]])
        out.append([members[j] for j in range(len(members)) if j not in held and j > first])
    return [u for u in out if u]


def by_blocks(params: Sequence[ParamInfo]) -> Layering:
    """Layers from the model's repeated block stacks (see above); no stacks: by top-level module."""
    stacks = _stacks(params, 0)
    # Blocks that hold modules are the model's blocks; a Sequential of bare layers (timm's deep stem
    # `conv1.0`, `conv1.1`) counts only in a model that has nothing else (VGG's `features.N`).
    strong = {k: b for k, b in stacks.items() if all(_holds_modules(params, ms, len(k[0]) + 1) for ms in b.values())}
    stacks = strong or stacks
    # and a stack holds a good share of the model: Inception's `branch3x3dbl_1..3` are not its blocks
    total = sum(p.numel for p in params)
    stacks = {k: b for k, b in stacks.items()
              if sum(params[i].numel for ms in b.values() for i in ms) >= _MIN_STACK * total}
    towers: dict[tuple[str, ...], list[list[int]]] = {}
    for (path, stem), blocks in sorted(stacks.items(), key=lambda s: min(min(b) for b in s[1].values())):
        # `encoder.layer.N` and `layerN` both belong to the module holding the stack
        towers.setdefault(path if stem else path[:-1], []).extend(_units(params, blocks, path))
    size = {t: sum(params[i].numel for u in units for i in u) for t, units in towers.items()}
    biggest = max(size.values(), default=0)
    towers = {t: units for t, units in towers.items() if size[t] >= _MIN_TOWER * biggest and biggest}
    if not towers:
        return by_module(params, 1)
    longest = max(len(units) for units in towers.values())
    last = longest + 1
    layers: list[int | None] = [None] * len(params)
    starts: list[tuple[tuple[str, ...], list[tuple[int, int]]]] = []  # tower, (first position, layer) per unit
    for tower, units in towers.items():
        first_layer = longest - len(units) + 1  # aligned at the output end
        for k, unit in enumerate(units):
            for i in unit:
                layers[i] = first_layer + k
        starts.append((tower, sorted((min(unit), first_layer + k) for k, unit in enumerate(units))))
    for pos, p in enumerate(params):
        if layers[pos] is not None:
            continue
        parts = p.name.split(".")
        # The tower it belongs with: the one sharing the longest name prefix (none: the first tower).
        tower, unit_starts = max(starts, key=lambda s: (_common(s[0], parts), -s[1][0][0]))
        if _common(tower, parts) == 0:
            tower, unit_starts = min(starts, key=lambda s: s[1][0][0])
            unit_starts = [(start, layer - unit_starts[0][1] + 1) for start, layer in unit_starts]
        # Before the tower: just below its first block; between its blocks (a downsample between
        # stages): with the block that follows; after it: the last layer.
        following = next((layer for start, layer in unit_starts if start > pos), None)
        layers[pos] = last if following is None else following - 1 if pos < unit_starts[0][0] else following
    return layers, last + 1


def _holds_modules(params: Sequence[ParamInfo], members: Sequence[int], depth: int) -> bool:
    return any(len(params[i].name.split(".")) > depth + 1 for i in members)


def _common(path: tuple[str, ...], parts: Sequence[str]) -> int:
    n = 0
    for a, b in zip(path, parts):
        if a != b:
            break
        n += 1
    return n
