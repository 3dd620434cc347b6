"""Safetensors headers read as safetensors reads them: every file the safetensors library writes is
accepted with its names and shapes, every damaged header is refused (exit 2, the file and tensor named)."""

from __future__ import annotations

import json
import random
import re
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

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
