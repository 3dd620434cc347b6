"""Model sources that must never be silently wrong: arguments lrrules sets itself, weights never
loaded, unknown Hugging Face architectures, factories that exit, checkpoints without parameters or
without the model's order."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from lrrules.cli import main

LLRD = """version: 1
defaults: {lr: 1.0}
layers: {by: %s}
rules:
  - {name: body, fallback: true, lr_mult: "0.5 ** depth"}
"""
PLAIN = "version: 1\ndefaults: {lr: 1.0}\nrules:\n  - {name: body, fallback: true}\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def safetensors(path: Path, tensors: dict[str, tuple[list[int], str]]) -> str:
    header: dict[str, Any] = {}
    offset = 0
    for name in sorted(tensors):  # as safetensors writes them: sorted by name, not the model's order
        shape, dtype = tensors[name]
        size = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1}[dtype]
        for d in shape:
            size *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return str(path)


@pytest.mark.parametrize("args,message", [
    (["--model-arg", "pretrained=true"], "never loads or downloads weights"),
    (["--model-arg", "checkpoint_path=x.pth"], "never loads or downloads weights"),
    (["--num-classes", "2", "--model-arg", "num_classes=3"], "disagree"),
    (["--model-arg", "num_classes=three"], "whole number"),
    (["--model-arg", "local_files_only=false"], "local files only"),
    (["--model-arg", "weights=DEFAULT"], "never loads or downloads weights"),
])
def test_arguments_lrrules_sets_itself_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        args: list[str], message: str) -> None:
    code, _, err = run(capsys, "check", write(tmp_path, PLAIN), "--model", "resnet18", *args)
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("args", [["--model-arg", "num_classes=3"], ["--num-classes", "3", "--model-arg",
                                                                     "num_classes=3"], ["--num-classes", "3"]])
def test_num_classes_from_either_option_builds_that_head(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, _ = run(capsys, "params", "--model", "resnet18", "--format", "json", *args)
    assert code == 0
    shapes = {p["name"]: p["shape"] for p in json.loads(out)["params"]}
    assert shapes["fc.weight"] == [3, 512]


def test_pretrained_false_is_what_lrrules_does_anyway(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "params", "--model", "resnet18", "--model-arg", "pretrained=false")
    assert code == 0, err


def test_an_architecture_transformers_lacks_is_an_error_with_suggestions(hf_dir: Any, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    folder = hf_dir("bert")
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["BertForSequenceClasification"]
    (folder / "config.json").write_text(json.dumps(config))
    code, _, err = run(capsys, "check", write(tmp_path, PLAIN), "--model", f"hf:{folder}")
    assert code == 2 and "BertForSequenceClasification" in err and "'BertForSequenceClassification'" in err


def test_a_factory_that_exits_does_not_make_check_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "exits_factory.py").write_text("import sys\ndef make(**kw):\n    sys.exit(0)\n")
    (tmp_path / "empty_factory.py").write_text("import torch\ndef make(**kw):\n    return torch.nn.ReLU()\n")
    monkeypatch.chdir(tmp_path)
    rules = write(tmp_path, PLAIN)
    code, _, err = run(capsys, "check", rules, "--model", "exits_factory:make")
    assert code == 2 and "exited" in err
    code, _, err = run(capsys, "check", rules, "--model", "empty_factory:make")
    assert code == 2 and "no parameters" in err


def test_a_checkpoint_without_parameters_does_not_make_check_pass(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = safetensors(tmp_path / "buffers.safetensors", {"bn.running_mean": ([4], "F32"),
                                                          "bn.num_batches_tracked": ([], "I64")})
    code, _, err = run(capsys, "check", write(tmp_path, PLAIN), "--model", path)
    assert code == 2 and "no parameters" in err


@pytest.mark.parametrize("layers", ["tensor", "module", "blocks"])
def test_an_order_bound_layering_on_safetensors_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           layers: str) -> None:
    path = safetensors(tmp_path / "model.safetensors", {"stem.weight": ([4, 3], "F32"),
                                                        "blocks.0.fc.weight": ([4, 4], "F32"),
                                                        "blocks.1.fc.weight": ([4, 4], "F32"),
                                                        "a_head.weight": ([2, 4], "F32")})
    code, _, err = run(capsys, "resolve", write(tmp_path, LLRD % layers), "--model", path)
    assert code == 2 and "sorted by name" in err and "by: patterns" in err
    code, _, err = run(capsys, "params", "--model", path, "--layers", layers)
    assert code == 2 and "sorted by name" in err
    index = write(tmp_path, PLAIN.replace("fallback: true", "fallback: true, lr_mult: '1 / (1 + index)'"), "i.yaml")
    code, _, err = run(capsys, "resolve", index, "--model", path)
    assert code == 2 and "'index'" in err
    # What needs no order still works: plain rules, the params listing, patterns.
    assert run(capsys, "check", write(tmp_path, PLAIN), "--model", path)[0] == 0
    assert run(capsys, "params", "--model", path)[0] == 0
    patterns = LLRD.replace("{by: %s}", "{by: patterns, patterns: ['stem.*', 'blocks.*', 'a_head.*']}")
    assert run(capsys, "check", write(tmp_path, patterns), "--model", path)[0] == 0


def test_a_torch_state_dict_keeps_the_models_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    code, out, err = run(capsys, "resolve", write(tmp_path, LLRD % "module"), "--model", str(tmp_path / "model.pt"),
                         "--format", "json")
    assert code == 0, err
    layers = [p["layer"] for p in json.loads(out)["params"]]
    assert layers == [0, 0, 1, 1, 2, 2]
