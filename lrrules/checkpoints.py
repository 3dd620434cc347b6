"""Reading checkpoints for their names and shapes: safetensors headers (a file, or the shards of an
index) without torch, and torch state dicts (``weights_only``, memory-mapped, on the meta device).

Each reader gives ``(name, shape, is a parameter)`` per tensor, in the file's order; a damaged
file is a :class:`~lrrules.errors.ModelError` naming the file and the tensor. A safetensors header is
read a chunk at a time (:func:`safetensors_entries`), with what safetensors writes matched by one
regular expression and anything else left to :mod:`json`, one entry at a time, so a million-tensor
header never stands in memory as text or as a dict of dicts.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import struct
from array import array
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO

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


#: One entry of a header as safetensors writes it (any JSON whitespace between the tokens): name,
#: dtype, shape, begin, end, and the "," or "}" after it. Anything else (an escape in a name, other keys
#: or another key order, a number with a sign or a fraction) is read by :mod:`json`, one entry at a time.
_SP = r"[ \t\n\r]*"
_INT = r"(?:0|[1-9][0-9]{0,30})"
_ENTRY = re.compile(
    rf'{_SP}"([^"\\\x00-\x1f]*)"{_SP}:{_SP}\{{{_SP}"dtype"{_SP}:{_SP}"([^"\\\x00-\x1f]*)"{_SP},{_SP}"shape"{_SP}:'
    rf'{_SP}\[({_SP}(?:{_INT}(?:{_SP},{_SP}{_INT})*)?{_SP})\]{_SP},{_SP}"data_offsets"{_SP}:{_SP}\[{_SP}({_INT})'
    rf'{_SP},{_SP}({_INT}){_SP}\]{_SP}\}}{_SP}([,}}])')
_SPACE = re.compile(_SP)
#: The header is read this many bytes at a time.
CHUNK = 1 << 20
#: The canonical dtype string (one object for every tensor of that dtype) and its bits per element.
_DTYPES = {name: (name, bits) for name, bits in _DTYPE_BITS.items()}
#: Shapes read so far, by their text in the header, as one shared tuple each and its element count;
#: past this many distinct shapes a header's further shapes are parsed each time.
_MAX_SHAPES = 1 << 16

#: One tensor of a safetensors header: name, dtype, shape, data begin and end (from the data's start).
Entry = tuple[str, str, tuple[int, ...], int, int]


class _Unusual(Exception):
    """A header the streaming reader leaves to :func:`json.loads` whole (not UTF-8, or no object)."""


def read_safetensors(path: Path) -> Iterator[tuple[str, tuple[int, ...], bool]]:
    """The (name, shape, is a parameter) of each tensor of a safetensors file, from its header alone,
    in the header's order (see :func:`safetensors_entries`).

    >>> [(name, shape) for name, shape, param in read_safetensors(Path("model.safetensors"))]  # doctest: +SKIP
    [('fc.bias', (10,)), ('fc.weight', (10, 512))]
    """
    integer = _INTEGER_DTYPES
    for name, dtype, shape, _begin, _end in safetensors_entries(path):
        yield name, shape, is_param(name, dtype in integer)


def safetensors_entries(path: Path, chunk: int = CHUNK) -> Iterator[Entry]:
    """Each tensor of a safetensors file's header as ``(name, dtype, shape, begin, end)``, one at a
    time, the header read ``chunk`` bytes at a time: a million-tensor header never stands in memory
    whole, nor as a dict. Tensors of one shape share one shape tuple, and a dtype is one string object.

    Each entry is checked as safetensors itself checks it: a known dtype, a sane shape, and data
    offsets inside the file that hold exactly shape x dtype bytes; a name given twice is refused. The
    result and the errors are :func:`safetensors_entries_json`'s (``json.loads`` of the whole header),
    which reads what this reader leaves (a header not in UTF-8, or not an object). A damaged header
    is a :class:`ModelError` naming the file and the first bad tensor, raised after the entries before it.

    >>> next(safetensors_entries(Path("model.safetensors")))                  # doctest: +SKIP
    ('fc.bias', 'F32', (10,), 0, 40)
    """
    with open(path, "rb") as fh:
        size, data_size = _preamble(path, fh)
        try:
            yield from _stream(path, fh, size, data_size, chunk)
        except _Unusual:
            pass
        else:
            return
    yield from safetensors_entries_json(path)


def _preamble(path: Path, fh: BinaryIO) -> tuple[int, int]:
    """The header's size and the data's, from the first 8 bytes and the file's size."""
    head = fh.read(8)
    if len(head) != 8:
        raise ModelError(f"{path}: not a safetensors file (too short)")
    (size,) = struct.unpack("<Q", head)
    if size > _MAX_HEADER:
        raise ModelError(f"{path}: not a safetensors file (header of {size} bytes)")
    data_size = fh.seek(0, 2) - 8 - size
    if data_size < 0:
        raise ModelError(f"{path}: not a safetensors file (its header of {size} bytes runs past the end of the file)")
    fh.seek(8)
    return size, data_size


def _not_json(path: Path) -> ModelError:
    return ModelError(f"{path}: not a safetensors file (its header is not JSON, or nests too deeply)")


def _stream(path: Path, fh: BinaryIO, size: int, data_size: int, chunk: int) -> Iterator[Entry]:
    """:func:`safetensors_entries` of a header in UTF-8 that is an object; raises :class:`_Unusual`,
    having yielded nothing, for any other."""
    left = size
    decoder = codecs.getincrementaldecoder("utf-8")("surrogatepass")  # as json.loads decodes bytes

    def more(buf: str, pos: int) -> str:
        """``buf`` from ``pos`` on, and the next bytes of the header (as many again, for a long entry)."""
        nonlocal left
        raw = fh.read(min(left, max(chunk, len(buf) - pos)))
        left -= len(raw)
        try:
            return buf[pos:] + decoder.decode(raw, final=not left)
        except UnicodeDecodeError:
            raise _not_json(path) from None

    first = fh.read(min(left, 4))
    if json.detect_encoding(first) != "utf-8":
        raise _Unusual
    fh.seek(8)
    buf = more("", 0)
    pos = _SPACE.match(buf).end()
    while pos == len(buf) and left:
        buf, pos = more(buf, pos), 0
        pos = _SPACE.match(buf).end()
    if buf[pos:pos + 1] != "{":
        raise _Unusual  # not an object (or nothing): json.loads says which
    pos += 1
    match_entry = _ENTRY.match
    dtypes = _DTYPES.get
    shapes: dict[str, tuple[tuple[int, ...], int]] = {}
    names: list[str] = []  # for the names given twice, found at the end: a set would cost 4x this list
    append = names.append
    begins, ends = array("Q"), array("Q")  # each good entry's data, for the layout checked at the end
    begun, ended = begins.append, ends.append
    failed: ModelError | None = None  # the first bad entry, raised once the rest is known to be JSON
    pos = _SPACE.match(buf, pos).end()
    while pos == len(buf) and left:
        buf, pos = more(buf, pos), 0
        pos = _SPACE.match(buf).end()
    closed = buf[pos:pos + 1] == "}"  # an empty object
    pos += closed
    while not closed:
        m = match_entry(buf, pos)
        if m is not None:
            name, dtype_text, shape_text, begin_text, end_text, after = m.groups()
            pos = m.end()
            closed = after == "}"
            if failed is not None or name == "__metadata__":
                continue
            known = shapes.get(shape_text)
            if known is None:
                shape = tuple(int(d) for d in shape_text.split(",")) if shape_text.strip(" \t\n\r") else ()
                count = 1
                for d in shape:
                    count *= d
                known = (shape, count)
                if len(shapes) < _MAX_SHAPES:
                    shapes[shape_text] = known
            shape, count = known
            dtype, bits = dtypes(dtype_text, (dtype_text, 0))
            begin, end = int(begin_text), int(end_text)
            append(name)
            if (not bits or count > _MAX_ELEMENTS or begin > end or end > data_size
                    or end - begin != (count * bits + 7) // 8):
                failed = _entry_error(path, name, {"dtype": dtype_text, "shape": list(shape),
                                                   "data_offsets": [begin, end]}, data_size)
                continue
            begun(begin)
            ended(end)
            yield name, dtype, shape, begin, end
            continue
        # Not an entry as safetensors writes it, or cut by the end of the buffer: json reads it.
        try:
            name, info, pos, closed = _json_entry(buf, pos)
        except _Short:
            if not left:
                raise _not_json(path) from None
            buf, pos = more(buf, pos), 0
            continue
        if failed is not None or name == "__metadata__":
            continue
        append(name)
        try:
            entry = _checked(path, name, info, data_size)
        except ModelError as exc:
            failed = exc
            continue
        begins.append(entry[3])
        ends.append(entry[4])
        yield entry
    # After the object only whitespace, as json.loads allows.
    while True:
        if _SPACE.match(buf, pos).end() != len(buf):
            raise _not_json(path)
        if not left:
            break
        buf, pos = more(buf, len(buf)), 0
    twice = _first_twice(names)
    if twice is not None:  # before the bad entry (or it): json.loads' reader would stop there first
        raise _twice_error(path, names[twice])
    if failed is not None:
        raise failed
    uncovered = _layout_error(path, names, begins, ends, data_size)
    if uncovered is not None:
        raise uncovered


def _layout_error(path: Path, names: list[str], begins: array[int], ends: array[int],
                  data_size: int) -> ModelError | None:
    """Why the tensors' data do not lie end to end over the whole data section, as safetensors
    requires (it refuses the file otherwise): sorted by offsets, each begins where the one before
    ends, the first at 0 and the last at the file's end. ``None`` where they do."""
    start = 0
    in_order = True
    for begin, end in zip(begins, ends):  # the order safetensors writes them in: no sort needed
        if begin != start:
            in_order = False
            break
        start = end
    if not in_order:
        start, before = 0, 0
        for i in sorted(range(len(begins)), key=lambda i: (begins[i], ends[i])):
            if begins[i] < start:
                return ModelError(f"{path}: tensor '{_clip(names[i])}' has data_offsets [{begins[i]}, {ends[i]}], "
                                  f"which overlap those of '{_clip(names[before])}' (up to {start}); the header is "
                                  "damaged (safetensors refuses it)")
            if begins[i] > start:
                return ModelError(f"{path}: bytes {start} to {begins[i]} of the data belong to no tensor (the next "
                                  f"is '{_clip(names[i])}'); the header is damaged (safetensors refuses it)")
            start, before = ends[i], i
    if start != data_size:
        return ModelError(f"{path}: the tensors' data end at byte {start}, but the file holds {data_size} bytes of "
                          "data; bytes belong to no tensor, the file is damaged (safetensors refuses it)")
    return None


def _first_twice(names: list[str]) -> int | None:
    """The position of the first name that comes again, or ``None``: sorted, the names given twice
    are neighbours; only those go in a set."""
    ordered = sorted(names)
    twice = {a for a, b in zip(ordered, islice(ordered, 1, None)) if a == b}
    del ordered
    seen: set[str] = set()
    for i, name in enumerate(names if twice else ()):
        if name in twice:
            if name in seen:
                return i
            seen.add(name)
    return None


def _twice_error(path: Path, name: str) -> ModelError:
    return ModelError(f"{path}: tensor '{_clip(name)}' is named twice in the header; the file is damaged")


class _Short(Exception):
    """What is left of the buffer is no whole entry: more of the header is needed (or it is not JSON)."""


_decode_value = json.JSONDecoder().raw_decode
_decode_string = json.decoder.scanstring


def _json_entry(buf: str, pos: int) -> tuple[str, Any, int, bool]:
    """The name and value of the entry at ``pos`` as :mod:`json` reads them, where the entry ends, and
    whether the object closes after it. Raises :class:`_Short` where ``buf`` holds no whole entry
    followed by "," or "}" (more of the header is needed, or it is not JSON)."""
    try:
        pos = _SPACE.match(buf, pos).end()
        if buf[pos:pos + 1] != '"':
            raise _Short
        name, pos = _decode_string(buf, pos + 1, True)
        pos = _SPACE.match(buf, pos).end()
        if buf[pos:pos + 1] != ":":
            raise _Short
        pos = _SPACE.match(buf, pos + 1).end()
        info, pos = _decode_value(buf, pos)
        pos = _SPACE.match(buf, pos).end()
        after = buf[pos:pos + 1]
        if after not in (",", "}"):  # also where a value (a number) is cut by the end of the buffer
            raise _Short
    except (ValueError, RecursionError):
        raise _Short from None
    return name, info, pos + 1, after == "}"


def safetensors_entries_json(path: Path) -> Iterator[Entry]:
    """:func:`safetensors_entries` the plain way: ``json.loads`` of the whole header, then each entry
    checked. It reads the headers the streaming reader leaves to it, and is what that reader is tested
    against.

    >>> next(safetensors_entries_json(Path("model.safetensors")))              # doctest: +SKIP
    ('fc.bias', 'F32', (10,), 0, 40)
    """
    with open(path, "rb") as fh:
        size, data_size = _preamble(path, fh)
        raw = fh.read(size)
    top: list[list[tuple[str, Any]]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        top[:] = [items]  # the outermost object comes last: its pairs in order, a name given twice kept twice
        return dict(items)

    try:
        header = json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        raise _not_json(path) from None
    del raw
    if not isinstance(header, dict):
        raise ModelError(f"{path}: not a safetensors file")
    seen: set[str] = set()
    names: list[str] = []
    begins, ends = array("Q"), array("Q")
    for name, info in top[0]:
        if name == "__metadata__":
            continue
        if name in seen:
            raise _twice_error(path, name)
        seen.add(name)
        entry = _checked(path, name, info, data_size)
        names.append(name)
        begins.append(entry[3])
        ends.append(entry[4])
        yield entry
    uncovered = _layout_error(path, names, begins, ends, data_size)
    if uncovered is not None:
        raise uncovered


def _entry_error(path: Path, name: str, info: Any, data_size: int) -> ModelError:
    try:
        _checked(path, name, info, data_size)
    except ModelError as exc:
        return exc
    raise AssertionError(f"{name}: the fast path refused an entry the checks accept")  # pragma: no cover


def _checked(path: Path, name: str, info: Any, data_size: int) -> Entry:
    """``(name, dtype, shape, begin, end)`` of one header entry, checked; raises :class:`ModelError`."""
    try:
        shape = tuple(info["shape"])
        dtype = info["dtype"]
    except (TypeError, KeyError, ValueError):
        raise ModelError(f"{path}: entry '{_clip(name)}' of the header has no dtype and shape") from None
    if not all(type(d) is int and d >= 0 for d in shape):  # int(2.5) and int(True) would pass
        raise ModelError(f"{path}: entry '{_clip(name)}' of the header has shape {_clip(repr(info['shape']))}; "
                         "a shape is a list of whole numbers >= 0")
    bits = _DTYPE_BITS.get(dtype) if type(dtype) is str else None
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
    return name, _DTYPES[dtype][0], shape, begin, end


#: Shards read at once: reading a header is mostly waiting for the disk (or the network file system)
#: and the parse holds the interpreter lock only between reads.
MAX_READERS = 8


def read_index(path: Path) -> list[tuple[str, tuple[int, ...], bool]]:
    """The (name, shape, is a parameter) of each tensor a sharded checkpoint's index names, in the
    index's order, each shard's header read in one pass, several shards at once. An error names the
    shard (the first of them in the index's order, as one shard after another would).

    >>> read_index(Path("model.safetensors.index.json"))[0]                 # doctest: +SKIP
    ('model.embed_tokens.weight', (128256, 8192), True)
    """
    try:
        weight_map = json.loads(path.read_text())["weight_map"]
    except (ValueError, KeyError, TypeError, RecursionError, OSError):
        raise ModelError(f"{path}: not a sharded checkpoint index (no 'weight_map')") from None
    if not isinstance(weight_map, dict) or not all(isinstance(s, str) and s for s in weight_map.values()):
        raise ModelError(f"{path}: 'weight_map' must map each tensor name to the file name of its shard")
    shards = list(dict.fromkeys(weight_map.values()))
    for shard in shards:
        # An index names files in its own folder; one reaching elsewhere is a damaged or hostile index.
        parts = re.split(r"[/\\]", shard)
        if PurePosixPath(shard).is_absolute() or PureWindowsPath(shard).is_absolute() or ".." in parts:
            raise ModelError(f"{path}: shard '{_clip(shard)}' reaches outside the index's folder; an index names "
                             "its shards by their paths under that folder")

    root = _shard_root(path)

    def read(shard: str) -> list[tuple[str, tuple[int, ...], bool]]:
        shard_path = path.parent / shard
        if not shard_path.is_file():
            raise ModelError(f"{path}: shard '{shard}' is missing")
        real = os.path.realpath(shard_path)
        if os.path.commonpath([real, root]) != root:  # a symbolic link out of the folder
            raise ModelError(f"{path}: shard '{_clip(shard)}' is a link to {_clip(real)}, outside {root}; an index's "
                             "shards lie in its folder (or, in the Hugging Face cache, in its repository's blobs/)")
        return list(read_safetensors(shard_path))

    found: dict[str, tuple[str, tuple[int, ...], bool]] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(MAX_READERS, len(shards)))) as pool:
        for shard, entries in zip(shards, pool.map(read, shards)):  # in the index's order: the first bad shard's error
            for entry in entries:
                listed = weight_map.get(entry[0])
                if listed != shard:
                    # Never drop a tensor the index does not account for: the index and shards disagree.
                    where = "does not list it" if listed is None else f"puts it in '{_clip(listed)}'"
                    raise ModelError(f"{path}: shard '{_clip(shard)}' holds '{_clip(entry[0])}', but the index "
                                     f"{where}; the index and its shards disagree: regenerate the index")
                found[entry[0]] = entry
            del entries
    missing = [n for n in weight_map if n not in found]
    if missing:
        raise ModelError(f"{path}: '{missing[0]}' is in the index but in no shard")
    return [found[name] for name in weight_map]


#: Where training checkpoints in the wild keep the model's state dict (Lightning, DeepSpeed, timm,
#: torchvision's references, most training scripts), looked for in this order.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "model_ema", "ema")
_ZIP_MAGIC = b"PK\x03\x04"


def _shard_root(index: Path) -> str:
    """The real folder an index's shards must lie in: the index's own, or, where it stands in the Hugging
    Face cache (``models--org--name/snapshots/<commit>/``, whose files are links into ``../../blobs/``),
    that repository's folder."""
    folder = Path(os.path.abspath(index.parent))
    for above in (folder, *folder.parents):
        if above.parent.name == "snapshots" and above.parent.parent.name.startswith(("models--", "datasets--")):
            return os.path.realpath(above.parent.parent)
    return os.path.realpath(folder)


def read_state_dict(path: Path) -> list[tuple[str, tuple[int, ...], bool]]:
    """The (name, shape, is a parameter) of each tensor of a torch checkpoint, in its order: a state dict,
    or the state dict a training checkpoint holds (:data:`STATE_DICT_KEYS`), in torch's zip format
    (memory-mapped) or its legacy one. Loaded with ``weights_only=True`` onto the meta device: a file
    that would need code run to load (a pickled ``nn.Module``, any other class) is refused, never run.

    >>> read_state_dict(Path("model.pt"))[0]                       # doctest: +SKIP
    ('conv1.weight', (64, 3, 7, 7), True)
    """
    import pickle

    import torch

    try:
        with open(path, "rb") as fh:
            zipped = fh.read(4) == _ZIP_MAGIC
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if zipped:
        _check_members(path)
    try:
        # mmap needs the zip format; a legacy file (torch.save(..., _use_new_zipfile_serialization=False)) is read whole
        loaded = torch.load(path, map_location="meta", weights_only=True, mmap=zipped)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc)) or re.search(
            r"unsupported GLOBAL ([\w.]+) whose module", str(exc))  # a blocked module's (os.system's)
        if found:
            raise ModelError(f"{path}: holds a pickled '{_clip(found.group(1))}', not a state dict of tensors; lrrules "
                             "reads torch files with weights_only=True and never runs a checkpoint's code: save "
                             "model.state_dict() (torch.save(model.state_dict(), path)) or a safetensors file") from None
        raise ModelError(f"{path}: cannot be read as a torch state dict with weights_only=True: "
                         f"{_clip(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}") from None
    except Exception as exc:
        why = str(exc).splitlines()[0] if str(exc) else ("the file ends early" if isinstance(exc, EOFError)
                                                         else type(exc).__name__)
        raise ModelError(f"{path}: cannot be read as a torch state dict with weights_only=True: {_clip(why)}") from None
    loaded = _state_dict_in(path, loaded)
    entries = []
    shapes: dict[tuple[int, ...], tuple[int, ...]] = {}  # one tuple per distinct shape, shared
    for name, tensor in loaded.items():
        if isinstance(tensor, torch.Tensor):
            integer = not (tensor.is_floating_point() or tensor.is_complex())
            shape = tuple(tensor.shape)
            entries.append((str(name), shapes.setdefault(shape, shape), is_param(str(name), integer)))
    return entries


def _has_tensors(value: Any) -> bool:
    import torch

    return isinstance(value, dict) and any(isinstance(v, torch.Tensor) for v in value.values())


def _state_dict_in(path: Path, loaded: Any) -> dict[Any, Any]:
    """The state dict ``loaded`` is or holds: itself where it maps names to tensors, else the first of
    :data:`STATE_DICT_KEYS` that does (a training checkpoint ``{'model': ..., 'optimizer': ..., 'epoch':
    ...}``, DeepSpeed's ``{'module': ...}``, a level or two down). Refused, naming its keys, otherwise."""
    here = loaded
    for _ in range(3):
        if _has_tensors(here):
            return here  # type: ignore[no-any-return]
        if not isinstance(here, dict):
            break
        inner = next((here[k] for k in STATE_DICT_KEYS if isinstance(here.get(k), dict)), None)
        if inner is None:
            break
        here = inner
    if not isinstance(loaded, dict):
        raise ModelError(f"{path}: holds a {type(loaded).__name__}, not a state dict")
    keys = ", ".join(repr(_clip(str(k))) for k in list(loaded)[:8]) + (", ..." if len(loaded) > 8 else "")
    raise ModelError(f"{path}: holds no state dict: a mapping with keys {keys or 'none'}, no tensors at its top "
                     f"and none under {', '.join(repr(k) for k in STATE_DICT_KEYS[:4])}; save model.state_dict()")


def _check_members(path: Path) -> None:
    """A torch zip file whose members name a place outside the archive (``../x``, ``/etc/x``, ``C:\\x``)
    is damaged or hostile: refused before torch reads it (nothing is ever extracted)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # torch says what is wrong with it
    for member in members:
        parts = re.split(r"[/\\]", member)
        if member.startswith(("/", "\\")) or PureWindowsPath(member).drive or ".." in parts or "\x00" in member:
            raise ModelError(f"{path}: zip member '{_clip(member)}' reaches outside the archive; the file is "
                             "damaged or hostile, and is not read")


# --- torch.distributed.checkpoint --------------------------------------------------------------

#: What a ``.metadata`` file of torch.distributed.checkpoint may name: the classes of its records and
#: the torch values inside them. Anything else refuses the file: it is never unpickled freely.
_DCP_GLOBALS = {
    ("torch.distributed.checkpoint.metadata", name) for name in (
        "Metadata", "TensorStorageMetadata", "TensorProperties", "ChunkStorageMetadata", "BytesStorageMetadata",
        "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING")
} | {("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
     ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath")}
MAX_DCP_METADATA = 256 << 20


def is_distributed_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a torch.distributed.checkpoint folder (it holds ``.metadata``)."""
    return path.is_dir() and (path / ".metadata").is_file()


def read_distributed(folder: Path) -> list[tuple[str, tuple[int, ...], bool]]:
    """The (name, shape, is a parameter) of each tensor a torch.distributed.checkpoint folder holds,
    from its ``.metadata`` alone, in its order. torch's own reader unpickles that file freely; here
    only the classes of its records may be named (:data:`_DCP_GLOBALS`), so no code is run.

    >>> read_distributed(Path("checkpoint/"))[0]                   # doctest: +SKIP
    ('model.fc.weight', (10, 512), True)
    """
    import io
    import pickle

    import torch

    where = folder / ".metadata"

    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in _DCP_GLOBALS or (module == "torch" and isinstance(getattr(torch, name, None),
                                                                                 torch.dtype)):
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"{module}.{name}")

    try:
        with open(where, "rb") as fh:
            raw = fh.read(MAX_DCP_METADATA + 1)
        if len(raw) > MAX_DCP_METADATA:
            raise ModelError(f"{where}: larger than {MAX_DCP_METADATA >> 20} MiB; not a checkpoint's metadata")
        metadata = Restricted(io.BytesIO(raw)).load()
    except pickle.UnpicklingError as exc:
        raise ModelError(f"{where}: names {_clip(str(exc))}, which a torch.distributed.checkpoint's metadata does "
                         "not hold; it is not read (lrrules never runs a checkpoint's code)") from None
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001  a damaged pickle fails in any of many ways
        raise ModelError(f"{where}: not a torch.distributed.checkpoint metadata file "
                         f"({type(exc).__name__}: {_clip(str(exc))})") from None
    from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata

    records = getattr(metadata, "state_dict_metadata", None) if isinstance(metadata, Metadata) else None
    if not isinstance(records, dict):
        raise ModelError(f"{where}: not a torch.distributed.checkpoint metadata file (no state_dict_metadata)")
    entries = []
    for name, record in records.items():
        if not isinstance(record, TensorStorageMetadata):
            continue  # BytesStorageMetadata: a value saved as bytes (a step count), not a tensor
        size, dtype = getattr(record, "size", None), getattr(getattr(record, "properties", None), "dtype", None)
        if not (isinstance(name, str) and isinstance(size, tuple) and all(type(d) is int and d >= 0 for d in size)
                and isinstance(dtype, torch.dtype)):
            raise ModelError(f"{where}: record {_clip(repr(name))} is damaged (its name, size or dtype)")
        entries.append((name, tuple(size), is_param(name, not (dtype.is_floating_point or dtype.is_complex))))
    return entries
