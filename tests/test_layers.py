"""Layer strategies on models from every corner: `by: blocks` finds the repeated block stacks of any
model, and a formula reading layers on a layering of one or two layers is warned about."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from torch import nn

import lrrules
from lrrules.cli import main
from lrrules.layers import by_blocks
from lrrules.params import collect
from lrrules.sources import on_meta

from .conftest import tiny_hf_config

LLRD = """version: 1
defaults: {lr: 1.0}
layers: {by: %s}
rules:
  - {name: body, fallback: true, lr_mult: "0.5 ** depth"}
"""


def hf(kind: str) -> nn.Module:
    import transformers

    config = tiny_hf_config(kind)
    return on_meta(lambda: getattr(transformers, config.architectures[0])(config))  # type: ignore[no-any-return]


def layers_of(model: nn.Module) -> tuple[dict[str, int | None], int]:
    infos, _ = collect(model)
    layers, count = by_blocks(infos)
    return {p.name: layer for p, layer in zip(infos, layers)}, count


# Each family: the regex whose group is the block number, and how many blocks its tiny config has.
STACKS = {
    "gpt2": (r"transformer\.h\.(\d+)\.", 3),
    "bert": (r"bert\.encoder\.layer\.(\d+)\.", 4),
    "llama": (r"model\.layers\.(\d+)\.", 3),
}


@pytest.mark.parametrize("kind", sorted(STACKS))
def test_blocks_are_the_numbered_layers_with_embeddings_first_and_head_last(kind: str) -> None:
    pattern, blocks = STACKS[kind]
    layers, count = layers_of(hf(kind))
    assert count == blocks + 2
    for name, layer in layers.items():
        found = re.match(pattern, name)
        if found:
            assert layer == int(found[1]) + 1, name
        else:
            assert layer in (0, count - 1), name
            assert (layer == 0) == any(k in name for k in ("embed", "wte", "wpe")), name


def test_t5_encoder_and_decoder_count_on_their_own_scales() -> None:
    layers, count = layers_of(hf("t5"))
    for name, layer in layers.items():
        found = re.match(r"(encoder|decoder)\.block\.(\d+)\.", name)
        if found:
            assert layer == int(found[2]) + 1, name
    assert layers["shared.weight"] == 0 and layers["encoder.final_layer_norm.weight"] == count - 1


def test_clip_towers_of_different_depths_align_at_their_outputs() -> None:
    layers, count = layers_of(hf("clip"))  # text 3 blocks, vision 4
    depth = {n: count - 1 - layer for n, layer in layers.items() if layer is not None}
    for tower, blocks in (("text_model", 3), ("vision_model", 4)):
        for b in range(blocks):
            assert depth[f"{tower}.encoder.layers.{b}.mlp.fc1.weight"] == blocks - b, "depth = blocks from the output"
        embeddings = [d for n, d in depth.items() if n.startswith(f"{tower}.embeddings.")]
        assert embeddings and set(embeddings) == {blocks + 1}


@pytest.mark.parametrize("name,blocks", [("resnet50", [3, 4, 6, 3]), ("convnext_tiny", [3, 3, 9, 3])])
def test_torchvision_blocks_run_in_order_from_stem_to_classifier(name: str, blocks: list[int]) -> None:
    import torchvision

    model = on_meta(lambda: torchvision.models.get_model(name, weights=None))
    layers, count = layers_of(model)
    ordered = list(layers.values())
    assert ordered == sorted(ordered), "layers grow from the input side"
    assert ordered[-1] == count - 1 and ordered[0] <= 1
    assert len(set(ordered)) >= sum(blocks) + 2, "every block is a layer of its own"


@pytest.mark.parametrize("kind,layers", [("bert", "timm"), ("llama", "module"), ("t5", "timm"), ("clip", "timm")])
def test_timm_or_module_layers_on_hugging_face_models_warn_and_name_blocks(kind: str, layers: str) -> None:
    plan = lrrules.resolve(lrrules.loads(LLRD % layers), hf(kind))
    assert plan.num_layers < 3
    assert any(f"'by: {layers}' puts this model in {plan.num_layers} layer(s)" in w and "by: blocks" in w
               for w in plan.warnings())
    assert not lrrules.resolve(lrrules.loads(LLRD % "blocks"), hf(kind)).warnings()


def test_a_layering_too_coarse_for_layer_decay_is_a_warning_and_strict_fails(
        hf_dir: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = hf("bert")
    coarse = lrrules.resolve(lrrules.loads(LLRD % "module"), model)
    assert coarse.num_layers < 3
    (warning,) = [w for w in coarse.warnings() if "layer" in w]
    assert "depth" in warning and "by: blocks" in warning
    fine = lrrules.resolve(lrrules.loads(LLRD % "blocks"), model)
    assert not fine.warnings() and fine.num_layers == 6
    rules = tmp_path / "rules.yaml"
    rules.write_text(LLRD % "module")
    spec = f"hf:{hf_dir('bert')}"
    assert main(["check", str(rules), "--model", spec]) == 0
    assert main(["check", str(rules), "--model", spec, "--strict"]) == 1
    assert "by: blocks" in capsys.readouterr().out


def test_a_sequential_model_is_its_numbered_children_and_other_models_their_top_level_modules() -> None:
    sequential = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4), nn.LayerNorm(4))
    layers, count = layers_of(sequential)
    assert count == 5 and list(layers.values()) == [1, 1, 2, 2, 3, 3]
    plain = nn.Module()
    plain.embed, plain.body, plain.head = nn.Linear(2, 3), nn.Linear(3, 3), nn.Linear(3, 1)
    layers, count = layers_of(plain)
    assert count == 3 and list(layers.values()) == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("name,head", [("resnet50", "fc"), ("convnext_tiny", "classifier.2")])
def test_init_layer_decay_on_torchvision_checks_strict_with_the_classifier_as_head(
        name: str, head: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    out = tmp_path / "rules.yaml"
    spec = f"torchvision:{name}"
    assert main(["init", "--model", spec, "--layer-decay", "0.8", "--no-decay-norm-bias", "-o", str(out)]) == 0
    assert "by: blocks" in out.read_text()
    assert main(["check", str(out), "--model", spec, "--strict"]) == 0
    capsys.readouterr()
    assert main(["resolve", str(out), "--model", spec, "--format", "json"]) == 0
    params = json.loads(capsys.readouterr().out)["params"]
    assert {p["name"] for p in params if p["rule"] == "head"} == {f"{head}.weight", f"{head}.bias"}
    assert len({p["lr"] for p in params if p["rule"] == "body"}) > 10, "layer decay over the blocks"


TIMM = sorted({n for n, _ in __import__("tests.test_timm_families", fromlist=["FAST"]).FAST}
              | set(__import__("tests.test_timm_families", fromlist=["FAMILIES"]).FAMILIES) - {"vgg11"})
# VGG is left out: nine tenths of it is the classifier MLP, so its conv stack is no stack of blocks
# and it is counted by top-level module (features, pre_logits, head): three layers.


@pytest.mark.parametrize("name", TIMM)
def test_blocks_on_timm_families_run_from_input_to_output_with_no_empty_layer(name: str) -> None:
    import timm
    import torch

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    layers, count = layers_of(model)
    ordered = list(layers.values())
    assert count >= 4, "a stack of blocks was found"
    assert ordered == sorted(ordered), "in registration order, layers only grow (stem first, head last)"
    assert set(ordered) == set(range(count)), "no layer is empty"
