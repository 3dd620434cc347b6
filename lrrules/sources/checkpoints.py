"""Checkpoints read for names and shapes, never values: safetensors headers (a file, an index's
shards) without torch, torch state dicts (``weights_only``, on the meta device), torch.distributed
checkpoint metadata (a restricted unpickler). Each reader gives ``(name, shape, is a parameter)``
per tensor in the file's order; a damaged file is a :class:`ModelError` naming it and the tensor."""

from __future__ import annotations

import json
import math
import os
import re
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, NoReturn

from ..errors import ModelError

Entry = tuple[str, tuple[int, ...], bool]

_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
#: The bits per element of every dtype a safetensors header may name.
_DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
               "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64,
               "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
_INTEGER_DTYPES = {"BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64"}
_MAX_HEADER = 100 << 20  # about safetensors' own limit
#: Shards read at once: reading a header is mostly waiting for the disk (or a network file system).
MAX_READERS = 8


def clip(text: str) -> str:
    """``text`` cut to 60 characters, for a message: ``clip("x" * 70)[-5:] == 'xx...'``."""
    return text if len(text) <= 60 else text[:57] + "..."


def is_param(name: str, integer: bool) -> bool:
    """Whether a checkpoint's tensor is a parameter: not integer, not a BatchNorm statistic
    (``is_param("bn1.running_mean", False)`` is ``False``)."""
    return not integer and not name.endswith(_BUFFER_SUFFIXES)


def read_safetensors(path: Path) -> list[Entry]:
    """Each tensor of a safetensors file, from its header, refused as safetensors refuses it: a header
    that is no strict JSON object (NaN, a key twice), an unknown dtype, data offsets that do not hold
    shape x dtype bytes or do not cover the data end to end. ``[('fc.bias', (10,), True), ...]``."""
    data_size, header = _header(path)
    entries: list[Entry] = []
    spans: list[tuple[int, int, str]] = []
    for name, info in header:
        if name == "__metadata__":
            if not (isinstance(info, dict) and all(isinstance(v, str) for v in info.values())):
                raise ModelError(f"{path}: the header's __metadata__ is {clip(repr(info))}; it maps names to strings")
        else:
            shape, dtype, begin, end = _checked(path, name, info, data_size)
            entries.append((name, shape, is_param(name, dtype in _INTEGER_DTYPES)))
            spans.append((begin, end, name))
    start, before = 0, ""
    for begin, end, name in sorted(spans):
        if begin < start:
            raise ModelError(f"{path}: tensor '{clip(name)}' has data_offsets [{begin}, {end}], which overlap those "
                             f"of '{clip(before)}' (up to {start}); the header is damaged (safetensors refuses it)")
        if begin > start:
            raise ModelError(f"{path}: bytes {start} to {begin} of the data belong to no tensor (the next is "
                             f"'{clip(name)}'); the header is damaged (safetensors refuses it)")
        start, before = end, name
    if start != data_size:
        raise ModelError(f"{path}: the tensors' data end at byte {start}, but the file holds {data_size} bytes of "
                         "data; bytes belong to no tensor, the file is damaged (safetensors refuses it)")
    return entries


def _header(path: Path) -> tuple[int, list[tuple[str, Any]]]:
    """The size of a safetensors file's data, and its header's (name, value) pairs in order."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        size = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 <= size <= _MAX_HEADER:
            raise ModelError(f"{path}: not a safetensors file ({'too short' if size < 0 else f'header of {size} bytes'})")
        raw = fh.read(size)
        data_size = fh.seek(0, 2) - 8 - size
    if data_size < 0:
        raise ModelError(f"{path}: not a safetensors file (its header of {size} bytes runs past the end of the file)")
    top: list[tuple[str, Any]] = []
    twice: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(items)
        if len(found) != len(items):
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    twice.append(key)
                    break
                seen.add(key)
        top[:] = items  # the outermost object is the last one made
        return found

    try:  # strict UTF-8 (no BOM, no UTF-16), no NaN or Infinity: what safetensors' own parser takes
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs, parse_constant=_refuse)
    except (ValueError, RecursionError):
        raise ModelError(f"{path}: not a safetensors file (its header is not JSON, or nests too deeply)") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: not a safetensors file")
    if twice:
        raise ModelError(f"{path}: tensor '{clip(twice[-1])}' is named twice in the header; the file is damaged"
                         if len(header) != len(top) else
                         f"{path}: key '{clip(twice[0])}' is given twice in one entry of the header; it is damaged")
    return data_size, top


def _refuse(constant: str) -> NoReturn:
    raise ValueError(constant)


def _checked(path: Path, name: str, info: Any, data_size: int) -> tuple[tuple[int, ...], str, int, int]:
    """``(shape, dtype, begin, end)`` of one header entry, checked as safetensors checks it."""
    try:
        shape, dtype = tuple(info["shape"]), info["dtype"]
    except (TypeError, KeyError, ValueError):
        raise ModelError(f"{path}: entry '{clip(name)}' of the header has no dtype and shape") from None
    if not all(type(d) is int and d >= 0 for d in shape):  # int(2.5) and int(True) would pass
        raise ModelError(f"{path}: entry '{clip(name)}' of the header has shape {clip(repr(info['shape']))}; "
                         "a shape is a list of whole numbers >= 0")
    bits = _DTYPE_BITS.get(dtype) if type(dtype) is str else None
    if bits is None:
        raise ModelError(f"{path}: tensor '{clip(name)}' has dtype {clip(repr(dtype))}, which is no "
                         f"safetensors dtype (known: {', '.join(_DTYPE_BITS)})")
    count = math.prod(shape)
    if count > 2**63:
        raise ModelError(f"{path}: tensor '{clip(name)}' has shape {clip(repr(list(shape)))}, more than 2**63 "
                         "elements; the header is damaged")
    offsets = info.get("data_offsets")
    if not (type(offsets) is list and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise ModelError(f"{path}: tensor '{clip(name)}' has data_offsets {clip(repr(offsets))}; "
                         "they are two whole numbers, begin <= end")
    begin, end = offsets
    if end > data_size:
        raise ModelError(f"{path}: tensor '{clip(name)}' has data_offsets [{begin}, {end}], past the end of the "
                         f"file's {data_size} data bytes; the file is truncated or damaged")
    if end - begin != (count * bits + 7) // 8:
        raise ModelError(f"{path}: tensor '{clip(name)}' has {end - begin} bytes of data, but shape "
                         f"{list(shape)} of {dtype} needs {(count * bits + 7) // 8}; the header is damaged")
    return shape, dtype, begin, end


def read_index(path: Path) -> list[Entry]:
    """Each tensor a sharded checkpoint's index names, in its order, several shards read at once; an
    error names the first bad shard in the index's order, as reading them in turn would:
    ``[('model.embed_tokens.weight', (128256, 8192), True), ...]``."""
    try:
        weight_map = json.loads(path.read_text())["weight_map"]
    except (ValueError, KeyError, TypeError, RecursionError, OSError):
        raise ModelError(f"{path}: not a sharded checkpoint index (no 'weight_map')") from None
    if not isinstance(weight_map, dict) or not all(isinstance(s, str) and s for s in weight_map.values()):
        raise ModelError(f"{path}: 'weight_map' must map each tensor name to the file name of its shard")
    shards = list(dict.fromkeys(weight_map.values()))
    for shard in shards:  # an index names files in its own folder; one reaching elsewhere is hostile
        if PurePosixPath(shard).is_absolute() or PureWindowsPath(shard).is_absolute() or _climbs(shard):
            raise ModelError(f"{path}: shard '{clip(shard)}' reaches outside the index's folder; an index names "
                             "its shards by their paths under that folder")
    root = _shard_root(path)

    def read(shard: str) -> list[Entry]:
        if not (path.parent / shard).is_file():
            raise ModelError(f"{path}: shard '{shard}' is missing")
        real = os.path.realpath(path.parent / shard)
        if os.path.commonpath([real, root]) != root:  # a symbolic link out of the folder
            raise ModelError(f"{path}: shard '{clip(shard)}' is a link to {clip(real)}, outside {root}; an index's "
                             "shards lie in its folder (or, in the Hugging Face cache, in its repository's blobs/)")
        return read_safetensors(path.parent / shard)

    found: dict[str, Entry] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(MAX_READERS, len(shards)))) as pool:
        for shard, entries in zip(shards, pool.map(read, shards)):  # in the index's order
            for entry in entries:
                listed = weight_map.get(entry[0])
                if listed != shard:  # never drop a tensor the index does not account for
                    where = "does not list it" if listed is None else f"puts it in '{clip(listed)}'"
                    raise ModelError(f"{path}: shard '{clip(shard)}' holds '{clip(entry[0])}', but the index "
                                     f"{where}; the index and its shards disagree: regenerate the index")
                found[entry[0]] = entry
    missing = [n for n in weight_map if n not in found]
    if missing:
        raise ModelError(f"{path}: '{missing[0]}' is in the index but in no shard")
    return [found[name] for name in weight_map]


def _climbs(member: str) -> bool:
    return ".." in re.split(r"[/\\]", member)


def _shard_root(index: Path) -> str:
    """The real folder an index's shards must lie in: its own, or its repository's in the Hugging Face
    cache (``models--org--name/snapshots/<commit>/`` holds links into ``../../blobs/``)."""
    folder = Path(os.path.abspath(index.parent))
    for above in (folder, *folder.parents):
        if above.parent.name == "snapshots" and above.parent.parent.name.startswith(("models--", "datasets--")):
            return os.path.realpath(above.parent.parent)
    return os.path.realpath(folder)


#: Where training checkpoints in the wild keep the model's state dict, looked for in this order.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "model_ema", "ema")


def read_state_dict(path: Path) -> list[Entry]:
    """Each tensor of a torch checkpoint (a state dict, or one a training checkpoint holds under
    :data:`STATE_DICT_KEYS`), loaded with ``weights_only=True`` onto the meta device: a file that
    needs code run to load (a pickled ``nn.Module``) is refused, never run: ``[('conv1.weight',
    (64, 3, 7, 7), True), ...]``."""
    import pickle
    import zipfile

    import torch

    try:
        with open(path, "rb") as fh:
            zipped = fh.read(4) == b"PK\x03\x04"
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist() if zipped else []
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        members = []  # torch says what is wrong with it
    for member in members:  # never extracted; still, a member naming a place outside the archive is hostile
        if member.startswith(("/", "\\")) or PureWindowsPath(member).drive or _climbs(member) or "\x00" in member:
            raise ModelError(f"{path}: zip member '{clip(member)}' reaches outside the archive; the file is "
                             "damaged or hostile, and is not read")
    try:  # mmap needs the zip format; a legacy file is read whole
        loaded = torch.load(path, map_location="meta", weights_only=True, mmap=zipped)
    except Exception as exc:  # a blocked global is named (os.system's module is blocked as a whole)
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)|unsupported GLOBAL ([\w.]+) whose module", str(exc))
        if isinstance(exc, pickle.UnpicklingError) and found:
            raise ModelError(f"{path}: holds a pickled '{clip(found.group(1) or found.group(2))}', not a state dict "
                             "of tensors; lrrules reads torch files with weights_only=True and never runs a "
                             "checkpoint's code: save model.state_dict() or a safetensors file") from None
        why = str(exc).splitlines()[0] if str(exc) else "the file ends early" if isinstance(exc, EOFError) else ""
        raise ModelError(f"{path}: cannot be read as a torch state dict with weights_only=True: "
                         f"{clip(why or type(exc).__name__)}") from None
    return [(str(name), tuple(t.shape), is_param(str(name), not (t.is_floating_point() or t.is_complex())))
            for name, t in _state_dict_in(path, loaded).items() if isinstance(t, torch.Tensor)]


def _state_dict_in(path: Path, loaded: Any) -> dict[Any, Any]:
    """The state dict ``loaded`` is or holds, a level or two down; refused, naming its keys, otherwise."""
    import torch

    here = loaded
    for _ in range(3):
        if not isinstance(here, dict):
            break
        if any(isinstance(v, torch.Tensor) for v in here.values()):
            return dict(here)
        here = next((here[k] for k in STATE_DICT_KEYS if isinstance(here.get(k), dict)), None)
    if not isinstance(loaded, dict):
        raise ModelError(f"{path}: holds a {type(loaded).__name__}, not a state dict")
    keys = ", ".join(repr(clip(str(k))) for k in list(loaded)[:8]) + (", ..." if len(loaded) > 8 else "")
    raise ModelError(f"{path}: holds no state dict: a mapping with keys {keys or 'none'}, no tensors at its top "
                     f"and none under {', '.join(repr(k) for k in STATE_DICT_KEYS[:4])}; save model.state_dict()")


#: What a torch.distributed.checkpoint ``.metadata`` may name besides torch dtypes: its records' classes.
_DCP_GLOBALS = {("torch.distributed.checkpoint.metadata", name) for name in (
    "Metadata", "TensorStorageMetadata", "TensorProperties", "ChunkStorageMetadata", "BytesStorageMetadata",
    "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING")} | {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"), ("torch.serialization", "_get_layout"),
    ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath")}
MAX_DCP_METADATA = 256 << 20


def is_distributed_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a torch.distributed.checkpoint folder (it holds ``.metadata``), as ``checkpoint/`` is."""
    return path.is_dir() and (path / ".metadata").is_file()


def read_distributed(folder: Path) -> list[Entry]:
    """Each tensor a torch.distributed.checkpoint folder holds, from its ``.metadata`` alone, unpickled
    allowing only :data:`_DCP_GLOBALS` (torch's own reader unpickles it freely): ``[('model.fc.weight',
    (10, 512), True), ...]``."""
    import io
    import pickle

    import torch
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in _DCP_GLOBALS or module == "torch" and isinstance(getattr(torch, name, None),
                                                                                torch.dtype):
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"{module}.{name}")

    where = folder / ".metadata"
    try:
        with open(where, "rb") as fh:
            raw = fh.read(MAX_DCP_METADATA + 1)
        if len(raw) > MAX_DCP_METADATA:
            raise ModelError(f"{where}: larger than {MAX_DCP_METADATA >> 20} MiB; not a checkpoint's metadata")
        records = getattr(Restricted(io.BytesIO(raw)).load(), "state_dict_metadata", None)
    except pickle.UnpicklingError as exc:
        raise ModelError(f"{where}: names {clip(str(exc))}, which a torch.distributed.checkpoint's metadata does "
                         "not hold; it is not read (lrrules never runs a checkpoint's code)") from None
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001  a damaged pickle fails in any of many ways
        raise ModelError(f"{where}: not a torch.distributed.checkpoint metadata file "
                         f"({type(exc).__name__}: {clip(str(exc))})") from None
    if not isinstance(records, dict):
        raise ModelError(f"{where}: not a torch.distributed.checkpoint metadata file (no state_dict_metadata)")
    entries = []
    for name, record in records.items():
        if isinstance(record, TensorStorageMetadata):  # not BytesStorageMetadata: a value saved as bytes
            size, dtype = getattr(record, "size", None), getattr(getattr(record, "properties", None), "dtype", None)
            if not (isinstance(name, str) and isinstance(size, tuple) and all(type(d) is int and d >= 0 for d in size)
                    and isinstance(dtype, torch.dtype)):
                raise ModelError(f"{where}: record {clip(repr(name))} is damaged (its name, size or dtype)")
            entries.append((name, tuple(size), is_param(name, not (dtype.is_floating_point or dtype.is_complex))))
    return entries
