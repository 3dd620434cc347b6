"""Reading checkpoints for their names and shapes: safetensors headers (a file, or the shards of an
index) without torch, and torch state dicts (``weights_only``, memory-mapped, on the meta device).

Each reader returns ``(name, shape, is a parameter)`` per tensor, in the file's order; a damaged
file is a :class:`~lrrules.errors.ModelError` naming the file and the tensor.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from .errors import ModelError

#: Names of state-dict entries that are buffers, not parameters.
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
_INTEGER_DTYPES = {"BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64"}
_MAX_HEADER = 100 << 20


def _clip(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def is_param(name: str, integer: bool) -> bool:
    """Whether a checkpoint's tensor is a parameter: not integer, not a BatchNorm statistic.

    >>> is_param("bn1.running_mean", False), is_param("fc.weight", False)
    (False, True)
    """
    return not integer and not name.endswith(_BUFFER_SUFFIXES)


#: The bits per element of every dtype a safetensors header may name.
_DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
               "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64,
               "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
_MAX_ELEMENTS = 2**63


def read_safetensors(path: Path) -> list[tuple[str, tuple[int, ...], bool]]:
    """The (name, shape, is a parameter) of each tensor of a safetensors file, from its header alone,
    each entry checked as safetensors itself checks it: a known dtype, a sane shape, and data offsets
    inside the file that hold exactly shape x dtype bytes. Raises :class:`ModelError` naming the tensor."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise ModelError(f"{path}: not a safetensors file (too short)")
        (size,) = struct.unpack("<Q", head)
        if size > _MAX_HEADER:
            raise ModelError(f"{path}: not a safetensors file (header of {size} bytes)")
        raw = fh.read(size)
        data_size = fh.seek(0, 2) - 8 - size
    if len(raw) != size:
        raise ModelError(f"{path}: not a safetensors file (its header of {size} bytes runs past the end of the file)")
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):
        raise ModelError(f"{path}: not a safetensors file (its header is not JSON, or nests too deeply)") from None
    del raw
    if not isinstance(header, dict):
        raise ModelError(f"{path}: not a safetensors file")
    header.pop("__metadata__", None)
    entries = []
    bits_of = _DTYPE_BITS.get
    for name, info in header.items():
        try:
            shape = tuple(info["shape"])
            dtype = info["dtype"]
        except (TypeError, KeyError, ValueError):
            raise ModelError(f"{path}: entry '{_clip(name)}' of the header has no dtype and shape") from None
        if not all(type(d) is int and d >= 0 for d in shape):  # int(2.5) and int(True) would pass
            raise ModelError(f"{path}: entry '{_clip(name)}' of the header has shape {_clip(repr(info['shape']))}; "
                             "a shape is a list of whole numbers >= 0")
        bits = bits_of(dtype) if type(dtype) is str else None
        if bits is None:
            raise ModelError(f"{path}: tensor '{_clip(name)}' has dtype {_clip(repr(dtype))}, which is no "
                             f"safetensors dtype (known: {', '.join(_DTYPE_BITS)})")
        offsets = info.get("data_offsets")
        if not (type(offsets) is list and len(offsets) == 2):
            raise ModelError(f"{path}: tensor '{_clip(name)}' has data_offsets {_clip(repr(offsets))}; "
                             "they are two whole numbers, begin <= end")
        begin, end = offsets
        count = 1
        for d in shape:
            count *= d
        if count > _MAX_ELEMENTS:
            raise ModelError(f"{path}: tensor '{_clip(name)}' has shape {_clip(repr(list(shape)))}, more than 2**63 "
                             "elements; the header is damaged")
        if not (type(begin) is int and type(end) is int and 0 <= begin <= end):
            raise ModelError(f"{path}: tensor '{_clip(name)}' has data_offsets {_clip(repr(offsets))}; "
                             "they are two whole numbers, begin <= end")
        if end > data_size:
            raise ModelError(f"{path}: tensor '{_clip(name)}' has data_offsets [{begin}, {end}], past the end of the "
                             f"file's {data_size} data bytes; the file is truncated or damaged")
        if end - begin != (count * bits + 7) // 8:
            raise ModelError(f"{path}: tensor '{_clip(name)}' has {end - begin} bytes of data, but shape "
                             f"{list(shape)} of {dtype} needs {(count * bits + 7) // 8}; the header is damaged")
        entries.append((name, shape, is_param(name, dtype in _INTEGER_DTYPES)))
    return entries


def read_index(path: Path) -> list[tuple[str, tuple[int, ...], bool]]:
    try:
        weight_map = json.loads(path.read_text())["weight_map"]
    except (ValueError, KeyError, TypeError, RecursionError, OSError):
        raise ModelError(f"{path}: not a sharded checkpoint index (no 'weight_map')") from None
    if not isinstance(weight_map, dict) or not all(isinstance(s, str) and s for s in weight_map.values()):
        raise ModelError(f"{path}: 'weight_map' must map each tensor name to the file name of its shard")
    shards = list(dict.fromkeys(weight_map.values()))
    found: dict[str, tuple[tuple[int, ...], bool]] = {}
    for shard in shards:
        shard_path = path.parent / shard
        if not shard_path.is_file():
            raise ModelError(f"{path}: shard '{shard}' is missing")
        for name, shape, is_param in read_safetensors(shard_path):
            found[name] = (shape, is_param)
    missing = [n for n in weight_map if n not in found]
    if missing:
        raise ModelError(f"{path}: '{missing[0]}' is in the index but in no shard")
    return [(name, *found[name]) for name in weight_map]


def read_state_dict(path: Path) -> list[tuple[str, tuple[int, ...], bool]]:
    import torch

    try:
        loaded = torch.load(path, map_location="meta", weights_only=True, mmap=True)
    except Exception as exc:
        raise ModelError(f"{path}: cannot be read as a torch state dict with weights_only=True: {exc}") from None
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise ModelError(f"{path}: holds a {type(loaded).__name__}, not a state dict")
    entries = []
    for name, tensor in loaded.items():
        if isinstance(tensor, torch.Tensor):
            integer = not (tensor.is_floating_point() or tensor.is_complex())
            entries.append((str(name), tuple(tensor.shape), is_param(str(name), integer)))
    return entries
