"""Every model source: timm, torchvision, Hugging Face configs, user factories, and checkpoints."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lrrules.errors import ModelError
from lrrules.sources import open_model, parse_model_args

from .conftest import TinyNet


@pytest.fixture
def state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return TinyNet().state_dict()


def expected_params() -> list[tuple[str, tuple[int, ...]]]:
    return [(n, tuple(p.shape)) for n, p in TinyNet().named_parameters()]


def test_timm_name_with_classes_and_model_args() -> None:
    model = open_model("resnet18", num_classes=3, model_args={"drop_rate": 0.5})
    assert model.module is not None and model.module.drop_rate == 0.5
    assert dict((p.name, p.shape) for p in model.params)["fc.weight"] == (3, 512)
    assert all(t.device.type == "meta" for t in model.tensors)


def test_torchvision_model_on_the_meta_device() -> None:
    model = open_model("torchvision:resnet18", num_classes=4)
    assert dict((p.name, p.shape) for p in model.params)["fc.weight"] == (4, 512)
    assert model.params[0].module == "Conv2d"


def test_unknown_torchvision_name_gets_close_names() -> None:
    with pytest.raises(ModelError, match="did you mean 'resnet18'"):
        open_model("torchvision:resnet-18")


def tiny_bert(folder: Path) -> Path:
    from transformers import BertConfig

    config = BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                        vocab_size=50, max_position_embeddings=32, architectures=["BertForSequenceClassification"])
    config.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("as_file", [False, True])
def test_huggingface_model_from_a_local_config(tmp_path: Path, as_file: bool) -> None:
    folder = tiny_bert(tmp_path)
    model = open_model(f"hf:{folder / 'config.json' if as_file else folder}", num_classes=3)
    shapes = dict((p.name, p.shape) for p in model.params)
    assert shapes["classifier.weight"] == (3, 16)
    assert "bert.encoder.layer.1.output.dense.weight" in shapes
    assert type(model.module).__name__ == "BertForSequenceClassification"


def test_huggingface_folder_without_config_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no config.json there"):
        open_model(f"hf:{tmp_path}")


def test_user_factory_from_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "def small(num_classes=2, width=4):\n"
        "    return torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.Linear(width, num_classes))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "mymodels", raising=False)
    model = open_model("mymodels:small", num_classes=5, model_args={"width": 7})
    assert [(p.name, p.shape) for p in model.params] == [
        ("0.weight", (7, 3)), ("0.bias", (7,)), ("1.weight", (5, 7)), ("1.bias", (5,))]


def test_factory_that_is_missing_or_returns_no_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notmodels.py").write_text("def make():\n    return 42\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="not a torch.nn.Module"):
        open_model("notmodels:make")
    with pytest.raises(ModelError, match="has no callable 'nothing'"):
        open_model("notmodels:nothing")
    with pytest.raises(ModelError, match="cannot import 'no_such_module_here'"):
        open_model("no_such_module_here:make")


def test_safetensors_checkpoint_gives_parameters_not_buffers(
    tmp_path: Path, state_dict: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "model.safetensors"
    save_file(state_dict, path)
    model = open_model(str(path))
    assert model.module is None
    assert sorted((p.name, p.shape) for p in model.params) == sorted(expected_params())
    assert all(p.module is None for p in model.params)


def test_safetensors_header_alone_is_read(tmp_path: Path) -> None:
    # A header followed by 4 GB of data (a sparse file, no disk spent): only the header may be read.
    header = json.dumps({"w": {"dtype": "F32", "shape": [1024, 1024, 1024], "data_offsets": [0, 4 << 30]},
                         "step": {"dtype": "I64", "shape": [], "data_offsets": [4 << 30, (4 << 30) + 8]}}).encode()
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as fh:
        fh.write(len(header).to_bytes(8, "little") + header)
        fh.truncate(8 + len(header) + (4 << 30) + 8)
    assert [(p.name, p.shape) for p in open_model(str(path)).params] == [("w", (1024, 1024, 1024))]


def test_sharded_safetensors_index(tmp_path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    names = list(state_dict)
    half = len(names) // 2
    shards = {"a.safetensors": names[:half], "b.safetensors": names[half:]}
    for shard, keys in shards.items():
        save_file({k: state_dict[k] for k in keys}, tmp_path / shard)
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {k: s for s, keys in shards.items() for k in keys}}))
    assert [(p.name, p.shape) for p in open_model(str(index)).params] == expected_params()


def test_sharded_index_with_a_missing_shard(tmp_path: Path) -> None:
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "gone.safetensors"}}))
    with pytest.raises(ModelError, match="shard 'gone.safetensors' is missing"):
        open_model(str(index))


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_torch_state_dict_in_registration_order(
    tmp_path: Path, state_dict: dict[str, torch.Tensor], suffix: str
) -> None:
    path = tmp_path / f"model{suffix}"
    torch.save(state_dict, path)
    assert [(p.name, p.shape) for p in open_model(str(path)).params] == expected_params()


def test_state_dict_that_needs_unsafe_loading_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"weights": TinyNet()}, path)  # a pickled module: only weights_only=False would load it
    with pytest.raises(ModelError, match="weights_only=True"):
        open_model(str(path))


def test_not_a_checkpoint_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00nope!")
    with pytest.raises(ModelError, match="not a safetensors file"):
        open_model(str(path))
    with pytest.raises(ModelError, match="no such checkpoint"):
        open_model(str(tmp_path / "absent.pt"))


def test_model_args_are_read_as_json_where_they_can_be() -> None:
    assert parse_model_args(["a=1", "b=0.5", "c=true", "d=avg", "e=[1, 2]"]) == {
        "a": 1, "b": 0.5, "c": True, "d": "avg", "e": [1, 2]}
    with pytest.raises(ModelError, match="key=value"):
        parse_model_args(["novalue"])
