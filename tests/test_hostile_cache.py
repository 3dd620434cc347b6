"""The model cache as a shared, hostile place: a folder another user owns or others can write is not
used (an entry planted there with the right key never changes the groups), nothing planted at an
entry's path or its temporary name is followed, processes filling one entry at once never show a
reader half an entry, a full disk leaves no entry, an entry cut short is rebuilt, a relative or
non-directory ``XDG_CACHE_HOME`` is ignored, a new Hugging Face revision is a new key, ``--no-cache``
writes nothing, and nothing outside the cache folder is touched."""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import os
import signal
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrrules.sources import cache as modelcache
from lrrules.cli import main
from lrrules.sources.cache import cache_dir, cached_open_model
from lrrules.params import ParamInfo
from lrrules.sources import Model

REAL = {"a.weight": (2, 3), "b.bias": (3,)}
RULES = "version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: a, match: 'a.*', lr_mult: 2.0}\n  - {name: rest, fallback: true}\n"


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "model" / "m.pt"
    path.parent.mkdir()
    torch.save({n: torch.zeros(s) for n, s in REAL.items()}, str(path))
    return path


def names(model: Model) -> dict[str, tuple[int, ...]]:
    return {p.name: p.shape for p in model.params}


def sign(data: dict[str, Any]) -> bytes:
    """An entry as an attacker who knows the format would write it: its SHA-256 over its own text
    (written here independently of modelcache's writer)."""
    body = json.dumps({k: v for k, v in data.items() if k != "sha256"})[1:]
    return ('{"sha256": "' + hashlib.sha256(body.encode()).hexdigest() + '", ' + body).encode()


def planted(entry: Path) -> bytes:
    """The entry at ``entry`` rewritten to claim other parameters, signed: valid in every way but its place."""
    data = json.loads(entry.read_bytes())
    row = list(data["params"][0])  # the entry's own layout, whatever fields it has
    row[0], row[1] = "evil.weight", [7]
    data["params"] = [row]
    return sign(data)


def only_entry() -> Path:
    (entry,) = cache_dir().glob("*.json")
    return entry


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and not p.is_symlink()}


def test_an_entry_signed_as_lrrules_signs_it_is_read(checkpoint: Path, builds: list[str]) -> None:
    # The planting helper makes entries the reader accepts: so the refusals below are about place, not form.
    cached_open_model(str(checkpoint))
    only_entry().write_bytes(planted(only_entry()))
    assert names(cached_open_model(str(checkpoint))) == {"evil.weight": (7,)} and len(builds) == 1


def owned_by_another_user(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
    else:  # without root a file cannot be given away: lrrules is told it is another user
        monkeypatch.setattr(modelcache, "_me", lambda: os.geteuid() + 1)


@pytest.mark.parametrize("how", ["models-owned-by-another", "lrrules-owned-by-another", "models-world-writable",
                                 "lrrules-group-writable", "entry-owned-by-another", "entry-world-writable"])
def test_a_planted_entry_with_the_right_key_never_changes_the_groups(
        checkpoint: Path, builds: list[str], monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    cached_open_model(str(checkpoint))
    entry = only_entry()
    entry.write_bytes(planted(entry))
    target = {"models": entry.parent, "lrrules": entry.parent.parent, "entry": entry}[how.split("-")[0]]
    if "owned" in how:
        owned_by_another_user(target, monkeypatch)
    else:
        target.chmod(stat.S_IMODE(target.stat().st_mode) | (0o002 if "world" in how else 0o020))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = cached_open_model(str(checkpoint))
    assert names(again) == REAL and len(builds) == 2
    if how.startswith("entry"):  # the folder is ours: the untrusted entry is replaced by a true one
        assert names(cached_open_model(str(checkpoint))) == REAL and len(builds) == 2
    else:  # the folder is not: it is neither read nor written, and says so
        assert any("not used" in str(w.message) and str(target) in str(w.message) for w in caught)
        assert entry.read_bytes() == planted(entry) or "owned" in how


def test_the_command_line_gives_the_true_groups_beside_a_planted_entry(
        tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    assert main(["resolve", str(rules), "--model", str(checkpoint), "--format", "json", "--params"]) == 0
    honest = json.loads(capsys.readouterr().out)
    entry = only_entry()
    entry.write_bytes(planted(entry))
    entry.parent.chmod(0o777)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["resolve", str(rules), "--model", str(checkpoint), "--format", "json", "--params"]) == 0
    assert json.loads(capsys.readouterr().out) == honest


def test_a_symlink_at_the_entry_is_never_followed_for_reading_or_writing(
        tmp_path: Path, checkpoint: Path, builds: list[str]) -> None:
    cached_open_model(str(checkpoint))
    entry = only_entry()
    outside = tmp_path / "outside.json"
    outside.write_bytes(planted(entry))  # a valid entry with the right key, out of the folder
    entry.unlink()
    entry.symlink_to(outside)
    assert names(cached_open_model(str(checkpoint))) == REAL and len(builds) == 2
    assert json.loads(outside.read_bytes())["params"][0][0] == "evil.weight"  # untouched
    assert not entry.is_symlink() and names(cached_open_model(str(checkpoint))) == REAL and len(builds) == 2


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail, rather than hang, where a read would block (a FIFO opened without O_NONBLOCK)."""
    def fail(*_: Any) -> None:
        raise TimeoutError("blocked on a planted FIFO")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_fifo_at_the_entry_neither_hangs_nor_is_read(checkpoint: Path, builds: list[str], no_hang: None) -> None:
    cached_open_model(str(checkpoint))
    entry = only_entry()
    entry.unlink()
    os.mkfifo(entry)
    assert names(cached_open_model(str(checkpoint))) == REAL and len(builds) == 2
    assert entry.is_file() and names(cached_open_model(str(checkpoint))) == REAL and len(builds) == 2


@pytest.mark.parametrize("plant", ["symlink", "fifo", "file"])
def test_something_planted_at_the_temporary_name_is_not_followed_nor_touched(
        tmp_path: Path, checkpoint: Path, builds: list[str], monkeypatch: pytest.MonkeyPatch,
        no_hang: None, plant: str) -> None:
    cached_open_model(str(checkpoint))  # the folder exists; now the name the next write would use is taken
    entry = only_entry()
    entry.unlink()
    monkeypatch.setattr(modelcache.secrets, "token_hex", lambda n: "0" * (2 * n))
    partial = entry.with_name(f".{entry.name}.{'0' * 16}.tmp")
    outside = tmp_path / "outside"
    outside.write_text("mine")
    if plant == "symlink":
        partial.symlink_to(outside)
    elif plant == "fifo":
        os.mkfifo(partial)
    else:
        partial.write_text("someone's")
    with pytest.warns(UserWarning, match="cannot write the cache"):
        assert names(cached_open_model(str(checkpoint))) == REAL
    assert outside.read_text() == "mine" and not entry.exists()
    assert partial.is_symlink() or partial.exists()  # what was planted is left as it was
    if plant == "file":
        assert partial.read_text() == "someone's"


def _fill(spec: str, width: int, rounds: int, seen: Any) -> None:
    """One process: write the entry for ``spec`` (its parameters padded to ``width``) and read it, ``rounds`` times."""
    key = modelcache.cache_key(spec, None, {})
    model = Model(spec, [ParamInfo(f"p{i}.{'x' * width}", (i + 1,), None, True, i) for i in range(50)], None)
    for _ in range(rounds):
        modelcache._write(key, model)
        found = modelcache._read(key)
        seen.put(None if found is None else sorted({len(p.name) for p in found[1]}))


def test_processes_filling_one_entry_at_once_never_show_half_an_entry(tmp_path: Path) -> None:
    spec = str(tmp_path / "shared.pt")  # only its key matters: no file is read
    ctx = multiprocessing.get_context("fork")
    seen = ctx.Queue()
    workers = [ctx.Process(target=_fill, args=(spec, 40 * w, 40, seen)) for w in range(4)]
    for w in workers:
        w.start()
    results = [seen.get(timeout=60) for _ in range(4 * 40)]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    # Every read found a whole entry, as one process wrote it: one name length throughout, never a mix.
    assert all(r is not None and len(r) <= 2 for r in results)
    widths = {len(f"p0.{'x' * 40 * w}") for w in range(4)}
    assert all(set(r) <= widths | {n + 1 for n in widths} for r in results if r)
    assert {p.name for p in cache_dir().iterdir()} == {modelcache._entry_name(modelcache.cache_key(spec, None, {}))}


def test_a_full_disk_leaves_no_entry_and_no_partial_file(checkpoint: Path, builds: list[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def full(fd: int, data: Any) -> int:
        if len(data) > 20:
            real_write(fd, bytes(data[:20]))  # some bytes land, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(modelcache.os, "write", full)
    with pytest.warns(UserWarning, match="No space left"):
        assert names(cached_open_model(str(checkpoint))) == REAL
    assert list(cache_dir().iterdir()) == []
    monkeypatch.setattr(modelcache.os, "write", real_write)
    assert names(cached_open_model(str(checkpoint))) == REAL and names(cached_open_model(str(checkpoint))) == REAL
    assert len(builds) == 2  # built after the failure, then answered from the entry


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0, 1, exclude_max=True), flip=st.one_of(st.none(), st.integers(0, 10**6)))
def test_an_entry_cut_short_or_with_a_byte_changed_is_rebuilt(checkpoint: Path, cut: float, flip: int | None) -> None:
    cached_open_model(str(checkpoint))
    entry = only_entry()
    raw = bytearray(entry.read_bytes())
    if flip is None:
        raw = raw[:int(cut * len(raw))]
    else:
        raw[flip % len(raw)] ^= 0x01
    entry.write_bytes(bytes(raw))
    assert modelcache._read(modelcache.cache_key(str(checkpoint), None, {})) is None
    assert names(cached_open_model(str(checkpoint))) == REAL
    assert modelcache._read(modelcache.cache_key(str(checkpoint), None, {})) is not None  # rewritten whole


def test_a_relative_xdg_cache_home_is_ignored(tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.chdir(work)
    assert cache_dir() == home / ".cache" / "lrrules" / "models"
    cached_open_model(str(checkpoint))
    assert not (work / "relative").exists() and len(list(cache_dir().glob("*.json"))) == 1


def test_an_xdg_cache_home_that_is_a_file_is_left_alone(tmp_path: Path, checkpoint: Path, builds: list[str],
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "not-a-folder"
    plain.write_text("mine")
    monkeypatch.setenv("XDG_CACHE_HOME", str(plain))
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with pytest.warns(UserWarning, match="cannot use the cache folder"):
        assert main(["check", str(rules), "--model", str(checkpoint)]) == 0
        assert main(["check", str(rules), "--model", str(checkpoint)]) == 0
    assert plain.read_text() == "mine" and len(builds) == 2


def test_no_cache_writes_nothing_anywhere(tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    before = files_under(tmp_path)
    for command in (["check", str(rules)], ["resolve", str(rules)], ["explain", str(rules), "a.weight"],
                    ["params"]):
        assert main([*command, "--model", str(checkpoint), "--no-cache"]) == 0, capsys.readouterr().err
    assert list(xdg.iterdir()) == [] and files_under(tmp_path) == before


def hub_snapshot(hub: Path, commit: str, layers: int) -> None:
    """A Hugging Face cache as huggingface_hub lays it out: refs/main names the commit, the snapshot's
    config.json is a symbolic link into blobs/."""
    from tests.conftest import tiny_hf_config

    repo = hub / "models--org--tiny"
    config = tiny_hf_config("bert")
    config.num_hidden_layers = layers
    text = config.to_json_string()
    blob = repo / "blobs" / hashlib.sha256(text.encode()).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_text(text)
    link = repo / "snapshots" / commit / "config.json"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


@pytest.mark.slow
def test_a_new_revision_in_the_hugging_face_cache_is_a_new_entry(tmp_path: Path, builds: list[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    hub_snapshot(hub, "a" * 40, layers=1)
    first = cached_open_model("hf:org/tiny")
    assert cached_open_model("hf:org/tiny").params == first.params and len(builds) == 1
    hub_snapshot(hub, "b" * 40, layers=2)  # the cache moves to a new revision
    moved = cached_open_model("hf:org/tiny")
    assert len(builds) == 2
    layer_names = {p.name.split(".")[3] for p in moved.params if p.name.startswith("bert.encoder.layer.")}
    assert layer_names == {"0", "1"} and len(moved.params) > len(first.params)
