"""The model-source cache: a second open of the same source answers from the cache with the same
parameters and layer map, and anything that could change the answer (the source, its arguments, the
checkpoint's size and time, library versions) or a damaged entry means a rebuild, never a stale answer."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from lrrules.sources import cache as modelcache
from lrrules.cli import main
from lrrules.fields import TimmLayers
from lrrules.layers import assign
from lrrules.sources.cache import cache_dir, cached_open_model


def checkpoint(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    # A torch state dict: the checkpoint kind the cache keeps (a safetensors header is its own cache).
    torch.save({n: torch.zeros(s) for n, s in shapes.items()}, str(path))
    return path


def test_the_cache_lives_in_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "lrrules" / "models"
    cached_open_model(str(checkpoint(tmp_path / "m.pt", {"a.weight": (2, 3)})))
    assert len(list(cache_dir().glob("*.json"))) == 1


def test_a_second_open_is_answered_from_the_cache_with_the_same_parameters_and_timm_layers(builds: list[str]) -> None:
    first = cached_open_model("test_vit", num_classes=3)
    second = cached_open_model("test_vit", num_classes=3)
    assert builds == ["test_vit"]
    assert second.params == first.params and second.ordered == first.ordered
    # timm's layer map, as timm computes it from the built module, comes back from the entry.
    assert assign(TimmLayers(by="timm"), second.params, second.module) == \
        assign(TimmLayers(by="timm"), first.params, first.module)


def test_other_arguments_are_another_entry(builds: list[str]) -> None:
    a = cached_open_model("test_vit", num_classes=3)
    b = cached_open_model("test_vit", num_classes=5)
    cached_open_model("test_vit", num_classes=5, model_args={"qkv_bias": False})
    assert builds == ["test_vit"] * 3
    assert next(p.shape for p in a.params if p.name == "head.weight")[0] == 3
    assert next(p.shape for p in b.params if p.name == "head.weight")[0] == 5


def test_a_changed_checkpoint_is_read_again(tmp_path: Path, builds: list[str]) -> None:
    path = checkpoint(tmp_path / "m.pt", {"a.weight": (2, 3)})
    cached_open_model(str(path))
    checkpoint(path, {"a.weight": (2, 3), "b.weight": (4,)})
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    again = cached_open_model(str(path))
    assert builds == [str(path)] * 2
    assert [p.name for p in again.params] == ["a.weight", "b.weight"]
    assert cached_open_model(str(path)).params == again.params and len(builds) == 2


def test_another_library_version_is_another_entry(builds: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    cached_open_model("test_vit")
    real = modelcache.installed
    monkeypatch.setattr(modelcache, "installed", lambda name: "9.9" if name == "timm" else real(name))
    cached_open_model("test_vit")
    assert builds == ["test_vit"] * 2


@pytest.mark.parametrize("damage", [
    lambda text: "{not json",
    lambda text: "",
    lambda text: json.dumps({**json.loads(text), "key": "another source"}),
    lambda text: json.dumps({**json.loads(text), "params": [["a", ["x"], None, True, [], []]]}),
    lambda text: json.dumps({**json.loads(text), "params": []}),
    lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "ordered"}),
], ids=["garbage", "empty", "other-key", "bad-shape", "no-params", "missing-field"])
def test_a_damaged_entry_is_rebuilt_never_trusted(tmp_path: Path, builds: list[str], damage: Any) -> None:
    path = checkpoint(tmp_path / "m.pt", {"a.weight": (2, 3), "b.bias": (3,)})
    first = cached_open_model(str(path))
    (entry,) = cache_dir().glob("*.json")
    entry.write_text(damage(entry.read_text()))
    again = cached_open_model(str(path))
    assert builds == [str(path)] * 2 and again.params == first.params
    assert cached_open_model(str(path)).params == first.params and len(builds) == 2  # rewritten whole


def test_no_cache_neither_reads_nor_writes(tmp_path: Path, builds: list[str]) -> None:
    path = checkpoint(tmp_path / "m.pt", {"a.weight": (2, 3)})
    cached_open_model(str(path), use_cache=False)
    assert not cache_dir().exists()
    cached_open_model(str(path))
    cached_open_model(str(path), use_cache=False)
    assert len(builds) == 3


def test_a_users_factory_is_cached_only_when_asked(tmp_path: Path, builds: list[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mymodels.py").write_text("import torch\ndef make():\n    return torch.nn.Linear(2, 3)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mymodels", raising=False)
    cached_open_model("mymodels:make")
    cached_open_model("mymodels:make")
    assert len(builds) == 2
    cached_open_model("mymodels:make", cache_factory=True)
    cached_open_model("mymodels:make", cache_factory=True)
    assert len(builds) == 3


def test_the_command_line_answers_the_same_from_the_cache(tmp_path: Path, builds: list[str],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\ndefaults: {lr: 0.1}\nlayers: {by: timm}\n"
                     "rules:\n  - {name: all, match: '*', lr_mult: '0.5 ** depth'}\n")
    outputs = []
    for extra in ([], [], ["--no-cache"]):
        assert main(["resolve", str(rules), "--model", "test_vit", "--format", "json", *extra]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert builds == ["test_vit", "test_vit"]  # the second run was a hit, --no-cache built again
    assert outputs[0] == outputs[1] == outputs[2]


def test_a_passed_optimizer_check_is_remembered_and_a_failed_one_never(monkeypatch: pytest.MonkeyPatch) -> None:
    from lrrules import optim
    from lrrules.errors import OptimizerError
    from lrrules.loader import loads
    from lrrules.sources import check_optimizer_cached

    checked: list[object] = []
    real = optim.check_optimizer

    def counting(rules: Any) -> Any:
        checked.append(rules)
        return real(rules)

    monkeypatch.setattr(optim, "check_optimizer", counting)
    good = loads("version: 1\ndefaults: {lr: 0.1, betas: [0.9, 0.99]}\n")
    check_optimizer_cached(good)
    check_optimizer_cached(good)
    assert len(checked) == 1
    check_optimizer_cached(good, use_cache=False)
    assert len(checked) == 2
    other = loads("version: 1\ndefaults: {lr: 0.1, betas: [0.9, 0.98]}\n")
    check_optimizer_cached(other)
    assert len(checked) == 3
    bad = loads("version: 1\ndefaults: {lr: 0.1, betaz: [0.9, 0.99]}\n")
    for _ in range(2):
        with pytest.raises(OptimizerError, match="betaz"):
            check_optimizer_cached(bad)
    assert len(checked) == 5


def test_where_conditions_on_module_attributes_answer_the_same_from_the_cache(
        tmp_path: Path, builds: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "dw.yaml"
    rules.write_text("version: 1\ndefaults: {lr: 0.1, weight_decay: 0.05}\nunmatched: defaults\nmodifiers:\n"
                     "  - {name: dw, match: {module: 'Conv2d', where: 'groups == in_channels and groups > 1'}, weight_decay: 0}\n")
    outputs = []
    for _ in range(2):
        assert main(["resolve", str(rules), "--model", "mobilenetv3_small_050", "--params", "--format", "json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert builds == ["mobilenetv3_small_050"]  # the second answer came from the cache
    first, second = ([p["name"] for p in out["params"] if "dw" in p["modifiers"]] for out in outputs)
    assert first and first == second


# Each command on the cached path, in one fresh interpreter, with what it imported after each.
_CACHED_RUN = """
import contextlib, io, json, sys
from lrrules.cli import main
heavy = ("torch", "timm", "torchvision", "transformers")
found = {}
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    found[argv[0]] = [code, [m for m in heavy if m in sys.modules]]
print(json.dumps(found))
"""


@pytest.mark.parametrize("rules", ["examples/resnet18-discriminative.yaml", "examples/muon-adamw.yaml"])
def test_a_second_check_resolve_and_explain_import_neither_torch_nor_timm(rules: str) -> None:
    # muon-adamw names several optimizers: its check asks torch the first time and remembers the pass.
    model = ["--model", "resnet18", "--num-classes", "2"]
    commands = [["check", rules, *model], ["resolve", rules, *model], ["explain", rules, "fc.*", *model]]
    with contextlib.redirect_stdout(io.StringIO()):
        first = [main(argv) for argv in commands]  # fills the cache, here where torch is imported anyway
    done = subprocess.run([sys.executable, "-c", _CACHED_RUN, json.dumps(commands)], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    again = json.loads(done.stdout)
    assert {name: code for name, (code, _) in again.items()} == dict(zip(["check", "resolve", "explain"], first))
    assert {name: imported for name, (_, imported) in again.items()} == {"check": [], "resolve": [], "explain": []}


@pytest.mark.parametrize("name", ["torch", "timm", "pydantic", "PyYAML", "regex", "lrrules", "no-such-package-x"])
def test_the_versions_in_the_key_are_what_importlib_metadata_reads(name: str) -> None:
    from importlib import metadata

    try:
        expected: str | None = metadata.version(name)
    except metadata.PackageNotFoundError:
        expected = None
    assert modelcache.installed(name) == expected


@pytest.mark.parametrize("sharded", [False, True])
def test_a_safetensors_checkpoint_is_read_each_time_never_cached(tmp_path: Path, builds: list[str], sharded: bool) -> None:
    # Its header is as fast to read as an entry, and an entry of a million tensors costs memory.
    path = tmp_path / "m.safetensors"
    save_file({"a.weight": torch.zeros(2, 3)}, str(path))
    if sharded:
        path = tmp_path / "m.safetensors.index.json"
        path.write_text(json.dumps({"weight_map": {"a.weight": "m.safetensors"}}))
    first = cached_open_model(str(path))
    again = cached_open_model(str(path))
    assert builds == [str(path)] * 2 and again.params == first.params
    assert not cache_dir().exists() or not list(cache_dir().glob("*.json"))
