"""Safetensors headers read as safetensors reads them: every file the safetensors library writes is
accepted with its names and shapes, every damaged header is refused (exit 2, the file and tensor named)."""

from __future__ import annotations

import json
import math
import random
import re
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from lrrules.sources.checkpoints import read_index, read_safetensors
from lrrules.cli import main
from lrrules.errors import ModelError
from lrrules.sources import open_model

_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int16,
           torch.int8, torch.uint8, torch.bool, torch.float8_e4m3fn, torch.float8_e5m2]


@pytest.mark.parametrize("seed", range(8))
def test_every_file_safetensors_writes_is_read_with_its_names_and_shapes(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    tensors = {}
    for i in range(rng.randint(1, 12)):
        shape = [rng.randint(0 if rng.random() < 0.1 else 1, 5) for _ in range(rng.randint(0, 4))]
        tensors[f"block{i}.w{rng.randint(0, 99)}"] = torch.zeros(shape, dtype=rng.choice(_DTYPES))
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path))
    floating = {n: tuple(t.shape) for n, t in tensors.items() if t.is_floating_point()}
    if not floating:
        with pytest.raises(ModelError, match="no parameters"):
            open_model(str(path))
        return
    assert {p.name: p.shape for p in open_model(str(path)).params} == floating


def _write(path: Path, header: dict[str, Any], data: int) -> str:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(data))
    return str(path)


def _entry(dtype: str = "F32", shape: list[Any] | None = None, offsets: Any = None) -> dict[str, Any]:
    shape = [2, 3] if shape is None else shape
    return {"dtype": dtype, "shape": shape, "data_offsets": [0, 24] if offsets is None else offsets}


_DAMAGED = [
    ({"w": _entry(offsets=[0, 48])}, 48 - 1, "past the end"),            # the data runs past the file's end
    ({"w": _entry(offsets=[24, 48])}, 30, "past the end"),
    ({"w": _entry(offsets=[0, 20])}, 24, "needs 24"),                   # fewer bytes than 2 x 3 x F32
    ({"w": _entry(offsets=[0, 32])}, 32, "needs 24"),
    ({"w": _entry(dtype="F16")}, 24, "needs 12"),
    ({"w": _entry(dtype="F31")}, 24, "no safetensors dtype"),
    ({"w": _entry(dtype="float32")}, 24, "no safetensors dtype"),
    ({"w": _entry(dtype=4)}, 24, "no safetensors dtype"),
    ({"w": _entry(shape=[2**32, 2**32])}, 24, "more than 2\\*\\*63"),    # an absurd element count
    ({"w": _entry(shape=[10**30])}, 24, "more than 2\\*\\*63"),
    ({"w": _entry(offsets=[24, 0])}, 24, "begin <= end"),
    ({"w": _entry(offsets=[-8, 16])}, 24, "begin <= end"),
    ({"w": _entry(offsets=[0, 24.0])}, 24, "begin <= end"),
    ({"w": _entry(offsets=[0])}, 24, "two whole numbers"),
    ({"w": {"dtype": "F32", "shape": [2, 3]}}, 24, "two whole numbers"),
]


@pytest.mark.parametrize(("header", "data", "message"), _DAMAGED)
def test_a_damaged_header_is_refused_naming_the_file_and_tensor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], header: dict[str, Any], data: int, message: str
) -> None:
    path = _write(tmp_path / "m.safetensors", header, data)
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: all, match: '*'}\n")
    assert main(["check", str(rules), "--model", path]) == 2
    err = capsys.readouterr().err
    assert path in err and "tensor 'w'" in err
    assert re.search(message, err), err
    assert "Traceback" not in err


def test_a_damaged_shard_is_refused_through_its_index(tmp_path: Path) -> None:
    _write(tmp_path / "a.safetensors", {"w": _entry(offsets=[0, 48])}, 24)
    index = tmp_path / "m.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "a.safetensors"}}))
    with pytest.raises(ModelError, match="a.safetensors: tensor 'w' has data_offsets \\[0, 48\\], past the end"):
        open_model(str(index))


# --- headers as JSON writers write them, and as JSON allows -------------------------------------

_BITS = {"F32": 32, "F16": 16, "BF16": 16, "I64": 64, "U8": 8, "BOOL": 8, "F4": 4, "F6_E2M3": 6, "C64": 64}
_NAMES = st.from_regex(r"[a-z0-9_.]{1,16}", fullmatch=True) | st.text(st.characters(codec="utf-8", blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["w", "blocks.0.attn.qkv.weight", 'q"uote', "back\\slash", "tab\there", "é.weight", "__metadata__", ""])
_SPACES = st.text(st.sampled_from(" \t\n\r"), max_size=2)
_DAMAGE = [None] * 30 + ["dtype", "offsets", "float", "negative", "shape", "keys", "extra", "order", "bool"]


def _dump(value: Any, space: Any, ascii_: bool) -> str:
    """``value`` as JSON with whitespace ``space()`` between every two tokens."""
    if isinstance(value, dict):
        items = [f"{space()}{json.dumps(k, ensure_ascii=ascii_)}{space()}:{space()}{_dump(v, space, ascii_)}{space()}"
                 for k, v in value.items()]
        return "{" + ",".join(items) + space() + "}" if items else "{" + space() + "}"
    if isinstance(value, list):
        return "[" + ",".join(f"{space()}{_dump(v, space, ascii_)}{space()}" for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_)


@st.composite
def _headers(draw: st.DrawFn) -> tuple[str, int, list[tuple[str, str, tuple[int, ...], int, int]] | None]:
    """A header's text, the data size, and the entries a correct reader gives (None: it is damaged)."""
    names = draw(st.lists(_NAMES.filter(lambda n: n != "__metadata__"), min_size=0, max_size=8, unique=True))
    header: dict[str, Any] = {}
    expected: list[tuple[str, str, tuple[int, ...], int, int]] | None = []
    offset = 0
    meta_at = draw(st.integers(-1, len(names)))
    for i, name in enumerate(names):
        if i == meta_at:
            header["__metadata__"] = draw(st.dictionaries(_NAMES, _NAMES, max_size=2))
        dtype = draw(st.sampled_from(sorted(_BITS)))
        shape = draw(st.lists(st.integers(0, 5), max_size=3))
        count = 1
        for d in shape:
            count *= d
        end = offset + (count * _BITS[dtype] + 7) // 8
        entry: dict[str, Any] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}
        damage = draw(st.sampled_from(_DAMAGE))
        if damage == "order":  # another key order: still a good entry
            entry = dict(reversed(list(entry.items())))
        elif damage == "extra":  # a key safetensors does not write: still a good entry, read by json
            entry["note"] = draw(_NAMES)
        elif damage is not None:  # each of these is refused
            expected = None
            if damage == "keys":
                entry = {"dtype": dtype}
            elif damage == "dtype":
                entry["dtype"] = "F31"
            elif damage in ("shape", "bool"):
                entry["shape"] = [*shape, 2.5] if damage == "shape" else [True]
            else:
                entry["data_offsets"] = {"offsets": [offset, end + 1], "float": [offset, end + 0.0],
                                         "negative": [-1, end]}[damage]
        header[name] = entry
        if expected is not None:
            expected.append((name, dtype, tuple(shape), offset, end))
        offset = end
    if meta_at == len(names):
        header["__metadata__"] = {"format": "pt"}
    spaces = iter(draw(st.lists(_SPACES, min_size=400, max_size=400)) if draw(st.booleans()) else ["" for _ in range(400)])
    text = _dump(header, lambda: next(spaces, ""), draw(st.booleans()))
    data = max(0, offset + draw(st.sampled_from([0, 0, 3, -1, -5])))  # more data than named, or truncated
    return text, data, expected if data == offset else None  # safetensors refuses bytes no tensor covers


def _file(folder: Path, text: str | bytes, data: int) -> Path:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    path = folder / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(data))
    return path


def _read(path: Path) -> tuple[list[Any] | None, str | None]:
    try:
        return read_safetensors(path), None
    except ModelError as exc:
        return None, str(exc)


def _by_hand(entries: list[tuple[str, str, tuple[int, ...], int, int]]) -> list[tuple[str, tuple[int, ...], bool]]:
    """What a reader gives for good entries: integer tensors and BatchNorm statistics are no parameters."""
    return [(name, shape, dtype not in ("I64", "U8", "BOOL") and not name.endswith(("running_mean", "running_var",
             "num_batches_tracked"))) for name, dtype, shape, _, _ in entries]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_headers())
def test_a_header_gives_the_tensors_it_was_written_with_or_is_refused(
    tmp_path: Path, case: tuple[str, int, list[Any] | None]
) -> None:
    # Any whitespace, key order, escapes, extra keys and metadata: the entries as the generator wrote them.
    text, data, expected = case
    path = _file(tmp_path, text, data)
    entries, error = _read(path)
    if expected is not None:
        assert (entries, error) == (_by_hand(expected), None)
    else:
        assert entries is None and error is not None and str(path) in error


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_headers(), st.integers(0, 10**6), st.integers(0, 3), st.sampled_from(list('{}[]",:0-1e. \\u\x01x\xe9')))
def test_a_mangled_header_is_read_or_refused_naming_the_file_never_a_crash(
    tmp_path: Path, case: tuple[str, int, list[Any] | None], where: int, cut: int, insert: str
) -> None:
    text, data, _ = case
    at = where % (len(text) + 1)
    path = _file(tmp_path, text[:at] + insert + text[at + cut:], data)
    entries, error = _read(path)
    assert entries is not None or (error is not None and str(path) in error)


_ONE = b'{"w":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}'
NOT_JSON = "its header is not JSON"


@pytest.mark.parametrize(("raw", "outcome"), [
    (b"", NOT_JSON), (b"   ", NOT_JSON), (b"[]", "not a safetensors file"), (b"{", NOT_JSON), (b"}", NOT_JSON),
    (b'{"w"', NOT_JSON), (b'{"w":1,}', NOT_JSON), (_ONE + b" x", NOT_JSON),
    (b"\xef\xbb\xbf" + _ONE, NOT_JSON),                                     # a byte-order mark: not plain UTF-8
    (_ONE.decode().encode("utf-16"), NOT_JSON),                               # JSON, but not in UTF-8
    (_ONE.replace(b'"w"', b'"w\xff"'), NOT_JSON),                            # a name that is not UTF-8
    (b'{"__metadata__":{"x":NaN},' + _ONE[1:], NOT_JSON),                     # NaN and Infinity are no JSON
    (_ONE.replace(b"[0,4]", b"[0,Infinity]"), NOT_JSON),
    (b'{"__metadata__":' + b"[" * 100000 + b"]" * 100000 + b"}", NOT_JSON),
    (_ONE.replace(b"[0,4]", b"[0," + b"1" * 5000 + b"]"), NOT_JSON),           # past Python's int-conversion limit
    (_ONE.replace(b'"F32"', b'"F32","dtype":"F16"'), "'dtype' is given twice in one entry"),
    (b'{"a":{"dtype":"F32"} }', "no dtype and shape"), (b'{"w":12345}', "no dtype and shape"),
    (_ONE.replace(b"[]", b"[2]").replace(b"4]", b"8]"), "past the end"),
    (b"{}" + b" " * 5000, "bytes belong to no tensor"),
    (_ONE + b"   \n", [("w", (), True)]), (b" " * 5000 + _ONE, [("w", (), True)]),
    (b'{"__metadata__":12345,' + _ONE[1:], "__metadata__ is 12345; it maps names to strings"),
    (b'{"__metadata__":{"format":"pt","n":"1"},' + _ONE[1:], [("w", (), True)]),
])
def test_headers_at_the_edges_of_json(tmp_path: Path, raw: bytes, outcome: str | list[Any]) -> None:
    path = _file(tmp_path, raw, 4)
    if isinstance(outcome, list):
        assert read_safetensors(path) == outcome
    else:
        with pytest.raises(ModelError, match=re.escape(f"{path}: ") + ".*" + re.escape(outcome)):
            read_safetensors(path)


@pytest.mark.parametrize("spaced", [False, True])
@pytest.mark.parametrize("between", [0, 1, 50])
def test_a_name_given_twice_is_refused(tmp_path: Path, spaced: bool, between: int) -> None:
    entries = [("w", [0, 4])] + [(f"x{i}", [4 * i + 4, 4 * i + 8]) for i in range(between)]
    entries.append(("w", [4 * between + 4, 4 * between + 8]))
    sep, colon = (", ", ": ") if spaced else (",", ":")
    text = "{" + sep.join(f'"{n}"{colon}{{"dtype"{colon}"F32"{sep}"shape"{colon}[]{sep}"data_offsets"{colon}[{b}{sep}{e}]}}'
                          for n, (b, e) in entries) + "}"
    with pytest.raises(ModelError, match="tensor 'w' is named twice in the header"):
        read_safetensors(_file(tmp_path, text, 4 * len(entries)))


@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": "), (" ,\n", "\t:\r ")], ids=["compact", "spaced", "odd"])
@pytest.mark.parametrize(("header", "data", "message"), _DAMAGED)
def test_each_damaged_header_is_refused_however_it_is_spaced(
    tmp_path: Path, header: dict[str, Any], data: int, message: str, separators: tuple[str, str]
) -> None:
    path = _file(tmp_path, json.dumps({"a": _entry(offsets=[0, 24]), **header}, separators=separators), data)
    with pytest.raises(ModelError, match=message):
        read_safetensors(path)


# --- sharded checkpoints: shards read at once, the index's order and errors kept ------------------


def _sharded(folder: Path, rng: random.Random, shards: int) -> tuple[Path, list[tuple[str, tuple[int, ...], bool]]]:
    """A sharded checkpoint of random tensors, and what its index names, in the index's order."""
    tensors = {f"layers.{i}.{rng.choice(['w', 'b', 'running_mean'])}": (rng.choice(["F32", "BF16", "I64"]),
               [rng.randint(1, 4) for _ in range(rng.randint(0, 3))]) for i in range(rng.randint(shards, 40))}
    names = list(tensors)
    placed = {name: f"model-{rng.randrange(shards):05d}.safetensors" for name in names}
    for shard in set(placed.values()):
        header, offset = {}, 0
        for name in sorted(n for n in names if placed[n] == shard):
            dtype, shape = tensors[name]
            size = {"F32": 4, "BF16": 2, "I64": 8}[dtype] * math.prod(shape)
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
            offset += size
        _write(folder / shard, header, offset)
    rng.shuffle(names)  # the index's order is the model's, not the shards'
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {n: placed[n] for n in names}}))
    expected = [(n, tuple(tensors[n][1]), tensors[n][0] != "I64" and not n.endswith("running_mean")) for n in names]
    return index, expected


@pytest.mark.parametrize("seed", range(6))
def test_a_sharded_checkpoint_gives_each_tensor_in_the_index_order(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    index, expected = _sharded(tmp_path, rng, rng.choice([1, 2, 5, 12]))
    assert read_index(index) == expected
    assert [(p.name, p.shape) for p in open_model(str(index)).params] == [(n, s) for n, s, param in expected if param]


@pytest.mark.parametrize("bad", [[0], [3], [1, 4], [4, 1], [0, 5]])
def test_of_several_bad_shards_the_first_in_the_index_is_named(tmp_path: Path, bad: list[int]) -> None:
    # Read at once, the shards may fail in any order; the error is the one reading them in turn gives.
    shards = [f"s{i}.safetensors" for i in range(6)]
    for i, shard in enumerate(shards):
        if i == bad[0] or i not in bad:
            _write(tmp_path / shard, {f"t{i}": _entry(offsets=[0, 48] if i == bad[0] else [0, 24])}, 24)
    index = tmp_path / "m.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {f"t{i}": shard for i, shard in enumerate(shards)}}))
    first = shards[min(bad)]
    message = f"{first}: tensor 't{min(bad)}'" if min(bad) == bad[0] else f"shard '{first}' is missing"
    with pytest.raises(ModelError, match=re.escape(message)):
        read_index(index)


@pytest.mark.parametrize("where", ["unlisted", "elsewhere"])
def test_a_tensor_the_index_does_not_place_in_its_shard_is_an_error_not_dropped(tmp_path: Path, where: str) -> None:
    # The index and its shards disagree: taking either one's word would silently drop or move a tensor.
    _write(tmp_path / "a.safetensors", {"t0": _entry(offsets=[0, 24]), "extra": _entry(offsets=[24, 48])}, 48)
    _write(tmp_path / "b.safetensors", {"t1": _entry(offsets=[0, 24])}, 24)
    weight_map = {"t0": "a.safetensors", "t1": "b.safetensors"}
    if where == "elsewhere":
        weight_map["extra"] = "b.safetensors"
    index = tmp_path / "m.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    told = "does not list it" if where == "unlisted" else "puts it in 'b.safetensors'"
    with pytest.raises(ModelError, match=re.escape(f"shard 'a.safetensors' holds 'extra', but the index {told}")):
        read_index(index)


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors",
                                   "..\\x.safetensors", "C:\\x.safetensors"])
def test_an_index_naming_a_file_outside_its_folder_is_refused_before_reading_it(tmp_path: Path, shard: str) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    _write(tmp_path / "outside.safetensors", {"t0": _entry(offsets=[0, 24])}, 24)
    index = folder / "m.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"t0": shard}}))
    with pytest.raises(ModelError, match="reaches outside the index's folder"):
        read_index(index)


def test_shards_in_a_subfolder_of_the_index_are_read(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    _write(tmp_path / "shards" / "a.safetensors", {"t0": _entry(shape=[2, 3], offsets=[0, 24])}, 24)
    index = tmp_path / "m.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"t0": "shards/a.safetensors"}}))
    assert read_index(index) == [("t0", (2, 3), True)]
