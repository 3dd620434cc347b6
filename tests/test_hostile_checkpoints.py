"""Real-world checkpoints, as ``--model PATH`` and ``resolve_names``: torch's legacy format, a whole
pickled module, training checkpoints, zips whose members leave the folder, torch.distributed.checkpoint
folders, upper-case extensions, a sharded index laid out as the Hugging Face cache lays it out, and
safetensors files safetensors itself refuses. Each gives the right names or a clear refusal naming
the file; no code in a file is ever run."""

from __future__ import annotations

import json
import os
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

import lrrules
from lrrules.cli import main
from lrrules.errors import ModelError
from lrrules.sources import open_model

RULES = "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: all, fallback: true}\n"


def state_dict() -> dict[str, torch.Tensor]:
    # Not sorted by name, with a buffer: the order and the parameter/buffer split are both checked.
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    return net.state_dict()


def expected(sd: dict[str, torch.Tensor]) -> list[tuple[str, tuple[int, ...]]]:
    """The parameters a state dict holds, by hand: floating tensors that are no BatchNorm statistic."""
    return [(n, tuple(t.shape)) for n, t in sd.items()
            if t.is_floating_point() and not n.endswith(("running_mean", "running_var"))]


def read(path: Path | str) -> list[tuple[str, tuple[int, ...]]]:
    return [(p.name, p.shape) for p in open_model(str(path)).params]


def cli_refuses(tmp_path: Path, path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    code = main(["check", str(rules), "--model", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("lrrules: error: ") and "Traceback" not in err
    assert str(path) in err
    return err


# --- torch files -------------------------------------------------------------------------------


def test_the_legacy_format_is_read_with_its_names_in_order(tmp_path: Path) -> None:
    sd = state_dict()
    path = tmp_path / "legacy.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:4] != b"PK\x03\x04"  # truly the old format
    assert read(path) == expected(sd)
    plan = lrrules.resolve_names(lrrules.loads(RULES), path)
    assert [r.name for r in plan.params] == [n for n, _ in expected(sd)]


@pytest.mark.parametrize("legacy", [False, True])
def test_a_whole_pickled_module_is_refused_naming_its_class(tmp_path: Path, legacy: bool,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 3), path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(ModelError, match=r"holds a pickled 'torch\.nn\.modules\.linear\.Linear'.*state_dict"):
        read(path)
    cli_refuses(tmp_path, path, capsys)


def _optimizer_state(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    params = [torch.nn.Parameter(t.clone()) for n, t in sd.items() if t.is_floating_point()]
    opt = torch.optim.AdamW(params)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    return opt.state_dict()


@pytest.mark.parametrize("layout", ["model", "state_dict", "module", "model_state_dict", "model/module", "lightning"])
def test_a_training_checkpoint_gives_the_state_dict_it_holds(tmp_path: Path, layout: str) -> None:
    sd = state_dict()
    optimizer = _optimizer_state(sd)
    held: dict[str, Any] = {
        "model": {"model": sd, "optimizer": optimizer, "epoch": 3},
        "state_dict": {"epoch": 3, "global_step": 10, "state_dict": sd, "optimizer_states": [optimizer]},
        "module": {"module": sd, "optimizer": optimizer, "global_steps": 5},
        "model_state_dict": {"epoch": 1, "model_state_dict": sd, "optimizer_state_dict": optimizer, "loss": 0.5},
        "model/module": {"model": {"module": sd}, "optimizer": optimizer},
        "lightning": {"pytorch-lightning_version": "2.0", "state_dict": sd, "lr_schedulers": [], "callbacks": {}},
    }[layout]
    path = tmp_path / "train.pt"
    torch.save(held, path)
    assert read(path) == expected(sd)


@pytest.mark.parametrize("held", [{"optimizer": "opt", "epoch": 3}, {"epoch": 3}, {}, [1, 2]],
                         ids=["optimizer-only", "epoch-only", "empty", "list"])
def test_a_checkpoint_without_a_state_dict_is_refused_naming_its_keys(tmp_path: Path, held: Any,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    if held == {"optimizer": "opt", "epoch": 3}:
        held = {"optimizer": _optimizer_state(state_dict()), "epoch": 3}
    path = tmp_path / "nothing.pt"
    torch.save(held, path)
    with pytest.raises(ModelError) as caught:
        read(path)
    for key in held if isinstance(held, dict) else ():
        assert repr(key) in str(caught.value)
    cli_refuses(tmp_path, path, capsys)


class Planted:
    """A pickle that, loaded freely, writes a file: proof that code ran."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.target)!r}, 'w').write('ran')",))


@pytest.mark.parametrize("where", ["top", "in-training-checkpoint", "legacy", "as-a-tensor-value"])
def test_a_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path: Path, where: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "ran.txt"
    evil = Planted(target)
    held = {"top": evil, "in-training-checkpoint": {"model": state_dict(), "hook": evil},
            "legacy": evil, "as-a-tensor-value": {"fc.weight": evil}}[where]
    path = tmp_path / "evil.pt"
    torch.save(held, path, _use_new_zipfile_serialization=where != "legacy")
    with pytest.raises(ModelError, match="pickled '(builtins.)?exec'"):
        read(path)
    cli_refuses(tmp_path, path, capsys)
    with pytest.raises(ModelError):
        lrrules.resolve_names(lrrules.loads(RULES), path)
    assert not target.exists()


class Shell:
    """A pickle whose global is in a module torch blocks outright (os.system), not merely unlisted."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.target}",))


def test_a_blocked_module_s_global_is_named_as_any_other(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "ran.txt"
    path = tmp_path / "shell.pt"
    torch.save({"fc.weight": Shell(target)}, path)
    with pytest.raises(ModelError, match=f"pickled '{os.system.__module__}.system', not a state dict"):
        read(path)
    assert "..." not in cli_refuses(tmp_path, path, capsys)
    assert not target.exists()


@pytest.mark.parametrize("content", [b"", b"\x80\x02", b"PK\x03\x04"])
def test_an_empty_or_cut_torch_file_says_why(tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cut.pt"
    path.write_bytes(content)
    err = cli_refuses(tmp_path, path, capsys)
    assert not err.rstrip().endswith(":"), err  # a reason follows the colon


@pytest.mark.parametrize("member", ["../escaped/data.pkl", "/abs/data.pkl", "archive/../../up.pkl",
                                    "C:\\evil\\data.pkl", "archive\\..\\..\\x"])
def test_a_zip_whose_members_leave_the_folder_is_refused(tmp_path: Path, member: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.pt"
    torch.save(state_dict(), good)
    path = tmp_path / "inside" / "bad.pt"
    path.parent.mkdir()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr(member, b"x")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ModelError, match="reaches outside the archive"):
        read(path)
    cli_refuses(tmp_path, path, capsys)
    assert set(p.name for p in tmp_path.rglob("*")) == {*before, "rules.yaml"}  # nothing extracted anywhere


# --- torch.distributed.checkpoint ----------------------------------------------------------------


def save_distributed(folder: Path, sd: dict[str, Any]) -> None:
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.distributed is disabled ... a single process"
        dcp.save(sd, checkpoint_id=str(folder))


def test_a_distributed_checkpoint_folder_gives_what_torchs_own_reader_gives(tmp_path: Path) -> None:
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    sd = {**state_dict(), "step": 7}
    folder = tmp_path / "dcp"
    save_distributed(folder, sd)
    metadata = FileSystemReader(str(folder)).read_metadata()  # torch's reader: safe here, the file is ours
    theirs = [(n, tuple(m.size)) for n, m in metadata.state_dict_metadata.items()
              if isinstance(m, TensorStorageMetadata) and m.properties.dtype.is_floating_point
              and not n.endswith(("running_mean", "running_var"))]
    assert read(folder) == theirs == expected({k: v for k, v in sd.items() if isinstance(v, torch.Tensor)})
    plan = lrrules.resolve_names(lrrules.loads(RULES), folder)
    assert [r.name for r in plan.params] == [n for n, _ in theirs]


@pytest.mark.parametrize("damage", ["code", "garbage", "empty", "not-metadata"])
def test_a_distributed_checkpoint_whose_metadata_would_run_code_or_is_damaged_is_refused(
        tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    import pickle

    folder = tmp_path / "dcp"
    save_distributed(folder, state_dict())
    target = tmp_path / "ran.txt"
    (folder / ".metadata").write_bytes({"code": pickle.dumps(Planted(target)), "garbage": b"\x80\x04not a pickle",
                                        "empty": b"", "not-metadata": pickle.dumps({"a": 1})}[damage])
    with pytest.raises(ModelError, match=r"\.metadata"):
        read(folder)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    assert main(["check", str(rules), "--model", str(folder)]) == 2
    assert ".metadata" in capsys.readouterr().err
    assert not target.exists()


# --- names and places ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["MODEL.SAFETENSORS", "model.SafeTensors", "MODEL.PT", "model.Pth", "PYTORCH_MODEL.BIN",
                                  "MODEL.SAFETENSORS.INDEX.JSON"])
def test_an_upper_case_extension_is_read_as_its_kind(tmp_path: Path, name: str) -> None:
    sd = state_dict()
    path = tmp_path / name
    if ".SAFETENSORS" in name.upper():
        shard = tmp_path / "Shard-1.SAFETENSORS" if name.upper().endswith("JSON") else path
        save_file({k: v.contiguous() for k, v in sd.items()}, str(shard))
        if shard != path:
            path.write_text(json.dumps({"weight_map": {k: shard.name for k in sd}}))
        want = sorted(expected(sd))  # safetensors keeps no order; the index, the index's
        got = read(path)
        assert (sorted(got) if shard == path else got) == (want if shard == path else expected(sd))
    else:
        torch.save(sd, path)
        assert read(path) == expected(sd)
    assert [r.name for r in lrrules.resolve_names(lrrules.loads(RULES), path).params]


def hf_cache_repo(root: Path, sd: dict[str, torch.Tensor], shards: int = 2) -> Path:
    """A sharded checkpoint as huggingface_hub lays it out: blobs/ named by hash, snapshots/<commit>/
    holding symbolic links into ../../blobs/. Returns the index's path in the snapshot."""
    repo = root / "models--org--model"
    blobs, snap = repo / "blobs", repo / "snapshots" / ("c" * 40)
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    names = list(sd)
    weight_map = {}
    for s in range(shards):
        part = {n: sd[n].contiguous() for n in names[s::shards]}
        shard = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file(part, str(blobs / f"blob{s}"))
        (snap / shard).symlink_to(f"../../blobs/blob{s}")
        weight_map.update({n: shard for n in part})
    (blobs / "index").write_text(json.dumps({"metadata": {}, "weight_map": {n: weight_map[n] for n in names}}))
    (snap / "model.safetensors.index.json").symlink_to("../../blobs/index")
    return snap / "model.safetensors.index.json"


def test_a_sharded_index_in_the_hugging_face_cache_layout_is_read(tmp_path: Path) -> None:
    sd = state_dict()
    index = hf_cache_repo(tmp_path / "hub", sd)
    assert read(index) == expected(sd)  # in the index's order, through the links into blobs/


@pytest.mark.parametrize("layout", ["hf-cache", "plain-folder"])
def test_a_shard_linked_out_of_its_folder_is_refused(tmp_path: Path, layout: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    sd = state_dict()
    outside = tmp_path / "elsewhere" / "shard.safetensors"
    outside.parent.mkdir()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(outside))
    if layout == "hf-cache":
        index = hf_cache_repo(tmp_path / "hub", sd, shards=1)
        shard = index.parent / "model-00001-of-00001.safetensors"
        shard.unlink()
    else:
        index = tmp_path / "plain" / "model.safetensors.index.json"
        index.parent.mkdir()
        index.write_text(json.dumps({"weight_map": {k: "model-00001-of-00001.safetensors" for k in sd}}))
        shard = index.parent / "model-00001-of-00001.safetensors"
    shard.symlink_to(outside)
    with pytest.raises(ModelError, match="outside"):
        read(index)
    cli_refuses(tmp_path, index, capsys)


def test_a_shard_linked_within_its_folder_is_read(tmp_path: Path) -> None:
    sd = state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "real.safetensors"))
    (tmp_path / "link.safetensors").symlink_to("real.safetensors")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {k: "link.safetensors" for k in sd}}))
    assert read(index) == expected(sd)


# --- safetensors files safetensors itself refuses ----------------------------------------------


@st.composite
def layouts(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    """A header of a few F32 tensors whose data offsets are laid out end to end and then, maybe,
    disturbed: shuffled (still valid), shifted, overlapped, with a gap, or with bytes left at the end."""
    sizes = draw(st.lists(st.integers(0, 3), min_size=0, max_size=5))
    names = [f"t{i}.weight" for i in range(len(sizes))]
    spans, offset = [], 0
    for size in sizes:
        spans.append([offset, offset + 4 * size])
        offset += 4 * size
    data = offset
    how = draw(st.sampled_from(["none", "shuffle", "shift", "overlap", "gap", "trailing", "short-data"]))
    if how == "shuffle":
        order = draw(st.permutations(range(len(sizes))))
        names = [names[i] for i in order]
        sizes = [sizes[i] for i in order]
        spans = [spans[i] for i in order]
    elif how in ("shift", "overlap", "gap") and sizes:
        i = draw(st.integers(0, len(sizes) - 1))
        delta = draw(st.sampled_from([-4, 4, 8]))
        if how == "overlap" and i > 0:
            spans[i] = [spans[i - 1][0], spans[i - 1][0] + 4 * sizes[i]]
        else:
            spans[i] = [max(0, spans[i][0] + delta), max(0, spans[i][0] + delta) + 4 * sizes[i]]
        data = max([data, *(e for _, e in spans)])
    elif how == "trailing":
        data += draw(st.integers(1, 9))
    header = {n: {"dtype": "F32", "shape": [s], "data_offsets": sp} for n, s, sp in zip(names, sizes, spans)}
    if draw(st.booleans()):
        header = {"__metadata__": {"format": "pt"}, **header}
    return header, data


def _write(path: Path, header: dict[str, Any], data: int) -> None:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(data))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layouts())
def test_a_safetensors_file_is_refused_exactly_where_safetensors_refuses_it(
        tmp_path: Path, case: tuple[dict[str, Any], int]) -> None:
    header, data = case
    path = tmp_path / "m.safetensors"
    _write(path, header, data)
    try:
        with safe_open(str(path), framework="pt") as f:
            theirs: list[Any] | None = sorted((k, tuple(f.get_slice(k).get_shape())) for k in f.keys())
    except Exception:  # noqa: BLE001  safetensors refuses it (SafetensorError)
        theirs = None
    try:
        ours: list[Any] | None = sorted(read(path))
    except ModelError as exc:
        assert str(path) in str(exc)
        ours = None
    if theirs == []:
        assert ours is None  # no parameters: lrrules refuses an empty checkpoint for its own reason
    else:
        assert ours == theirs


@pytest.mark.parametrize(("spans", "data", "message"), [
    ([[0, 4], [0, 4]], 4, "overlap those of 't0.weight'"),
    ([[0, 4], [8, 12]], 12, "bytes 4 to 8 of the data belong to no tensor"),
    ([[0, 4], [4, 8]], 11, "end at byte 8, but the file holds 11"),
    ([[4, 8], [0, 4]], 8, None),  # out of order but end to end: read
])
def test_overlapping_or_uncovered_data_is_refused_naming_the_tensor(tmp_path: Path, spans: list[list[int]],
                                                                    data: int, message: str | None) -> None:
    path = tmp_path / "m.safetensors"
    _write(path, {f"t{i}.weight": {"dtype": "F32", "shape": [1], "data_offsets": sp} for i, sp in enumerate(spans)}, data)
    if message is None:
        assert read(path) == [("t0.weight", (1,)), ("t1.weight", (1,))]
    else:
        with pytest.raises(ModelError, match=message):
            read(path)


def test_no_checkpoint_reader_opens_a_file_for_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every kind read once with open() and os.open watched: nothing is opened to write.
    sd = state_dict()
    torch.save(sd, tmp_path / "a.pt")
    torch.save({"model": sd}, tmp_path / "b.PT", _use_new_zipfile_serialization=False)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "c.safetensors"))
    save_distributed(tmp_path / "d", sd)
    index = hf_cache_repo(tmp_path / "hub", sd)
    writes: list[str] = []
    real_open = os.open

    def watched(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            writes.append(str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", watched)
    for path in (tmp_path / "a.pt", tmp_path / "b.PT", tmp_path / "c.safetensors", tmp_path / "d", index):
        assert read(path)
    assert writes == []
