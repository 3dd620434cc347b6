"""lrrules import mmengine: the written file gives MMEngine's own groups (its
DefaultOptimWrapperConstructor, installed) on real configs and real timm/torchvision models."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import pytest
import timm
import torch
import torchvision

from lrrules.capture import differences, rules_table, tensor_table
from lrrules.importers import command
from lrrules.importers import mmengine as importer

EMBED = {"lr_mult": 1.0, "decay_mult": 0.0}
NORM = {"lr_mult": 0.1, "decay_mult": 0.0}
ADAMW = {"type": "AdamW", "lr": 0.0001, "weight_decay": 0.05, "eps": 1e-8, "betas": (0.9, 0.999)}
# mmpretrain's schedules/imagenet_bs1024_adamw_swin.py (Swin, ConvNeXt): keys starting with "."
SWIN_SCHEDULE = {"norm_decay_mult": 0.0, "bias_decay_mult": 0.0, "flat_decay_mult": 0.0,
                 "custom_keys": {".absolute_pos_embed": {"decay_mult": 0.0},
                                 ".relative_position_bias_table": {"decay_mult": 0.0}}}


class Mask2Former(torch.nn.Module):
    """A Mask2Former's parameter layout: a real backbone, the queries, a decoder norm and a head."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.query_embed, self.query_feat = torch.nn.Embedding(10, 16), torch.nn.Embedding(10, 16)
        self.level_embed = torch.nn.Embedding(3, 16)
        self.decoder_norm, self.cls_embed = torch.nn.LayerNorm(16), torch.nn.Linear(16, 5)


def small_swin() -> torch.nn.Module:
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, embed_dim=16, depths=(2, 2, 2, 2),
                             num_heads=(1, 1, 2, 2), num_classes=0)


def mask2former_swin_keys() -> dict[str, Any]:
    """mmdet's mask2former_swin-t config: backbone norms and embeddings without decay, named
    explicitly because custom_keys['backbone'] would otherwise win over norm_decay_mult (#846)."""
    keys: dict[str, Any] = {"backbone": {"lr_mult": 0.1, "decay_mult": 1.0}, "backbone.patch_embed.norm": NORM,
                            "backbone.norm": NORM, "absolute_pos_embed": NORM, "relative_position_bias_table": NORM,
                            "query_embed": EMBED, "query_feat": EMBED, "level_embed": EMBED}
    keys.update({f"backbone.layers.{s}.blocks.{b}.norm": NORM for s in range(4) for b in range(2)})
    keys.update({f"backbone.layers.{s}.downsample.norm": NORM for s in range(1, 4)})
    return keys


def tiny_gpt2() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=2, n_positions=64))


CONFIGS: dict[str, tuple[dict[str, Any], Callable[[], torch.nn.Module]]] = {
    "mask2former-r50 (#846)": (
        {"optimizer": ADAMW, "paramwise_cfg": {"custom_keys": {"backbone": {"lr_mult": 0.1, "decay_mult": 1.0},
                                                               "query_embed": EMBED, "query_feat": EMBED,
                                                               "level_embed": EMBED}, "norm_decay_mult": 0.0}},
        lambda: Mask2Former(timm.create_model("resnet18", pretrained=False, num_classes=0))),
    "mask2former-swin": ({"optimizer": ADAMW, "paramwise_cfg": {"custom_keys": mask2former_swin_keys(),
                                                               "norm_decay_mult": 0.0}},
                         lambda: Mask2Former(small_swin())),
    "swin schedule": ({"optimizer": {**ADAMW, "lr": 1e-3}, "paramwise_cfg": SWIN_SCHEDULE}, small_swin),
    "convnext": ({"optimizer": {"type": "AdamW", "lr": 4e-3, "weight_decay": 0.05}, "paramwise_cfg": SWIN_SCHEDULE},
                 lambda: timm.create_model("convnext_atto", pretrained=False, num_classes=3)),
    "vit top-level keys": ({"optimizer": {**ADAMW, "lr": 3e-3, "weight_decay": 0.3},
                            "paramwise_cfg": {"custom_keys": {".cls_token": {"decay_mult": 0.0},
                                                              ".pos_embed": {"decay_mult": 0.0}}}},
                           lambda: timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3,
                                                     depth=2, img_size=32, patch_size=8)),
    "fcos bias_lr_mult": ({"optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0001},
                           "paramwise_cfg": {"bias_lr_mult": 2.0, "bias_decay_mult": 0.0}},
                          lambda: torchvision.models.resnet18(num_classes=3)),
    "mobilenet dwconv": ({"optimizer": {"type": "SGD", "lr": 0.045, "momentum": 0.9, "weight_decay": 4e-5},
                          "paramwise_cfg": {"norm_decay_mult": 0.0, "dwconv_decay_mult": 0.5, "bias_lr_mult": 2.0,
                                            "custom_keys": {"classifier": {"lr_mult": 10.0}}}},
                         lambda: torchvision.models.mobilenet_v2(num_classes=3)),
    # a tied embedding and head: MMEngine meets transformer.wte.weight first and skips lm_head (bypass_duplicate)
    "gpt2 tied, bypass_duplicate": ({"optimizer": ADAMW, "paramwise_cfg": {
        "bypass_duplicate": True, "norm_decay_mult": 0.0, "bias_decay_mult": 0.0,
        "custom_keys": {"lm_head": {"lr_mult": 10.0}, "h.1.": {"lr_mult": 2.0}}}}, lambda: tiny_gpt2()),
    "no weight decay set": ({"optimizer": {"type": "AdamW", "lr": 1e-3},
                             "paramwise_cfg": {"bias_lr_mult": 0.5, "flat_decay_mult": 0.0,
                                               "custom_keys": {"fc": {"lr_mult": 10.0}}}},
                            lambda: torchvision.models.resnet18(num_classes=3)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_written_file_gives_mmengines_own_groups(name: str) -> None:
    config, make = CONFIGS[name]
    model = make()
    text = importer.rules(config, model)
    mmengine_groups = importer.peer(config, model)
    assert differences(tensor_table(mmengine_groups, model), rules_table(text, make(), mmengine_groups)) == []


def test_846_is_reproduced_and_named() -> None:
    config, make = CONFIGS["mask2former-r50 (#846)"]
    model = make()
    text = importer.rules(config, model)
    assert "open-mmlab/mmengine#846" in text
    table = tensor_table(importer.peer(config, model), model)
    assert table["backbone.bn1.weight"]["weight_decay"] == 0.05  # MMEngine keeps decay on the backbone's norms
    assert table["decoder_norm.weight"]["weight_decay"] == 0.0
    assert rules_table(text, make(), torch.optim.SGD([torch.zeros(1)]))["backbone.bn1.weight"]["weight_decay"] == 0.05


def test_a_custom_key_of_its_own_constructor_is_refused() -> None:
    with pytest.raises(Exception, match="only MMEngine's DefaultOptimWrapperConstructor"):
        importer.rules({"constructor": "LearningRateDecayOptimizerConstructor", "optimizer": ADAMW})
    with pytest.raises(Exception, match="did you mean 'norm_decay_mult'"):
        importer.rules({"optimizer": ADAMW, "paramwise_cfg": {"norm_decay_mul": 0.0}})
    with pytest.raises(Exception, match="base_wd should not be None"):
        importer.rules({"optimizer": {"type": "SGD", "lr": 0.1}, "paramwise_cfg": {"norm_decay_mult": 0.0}})


def test_the_command_reads_a_python_config_and_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "fcos.py"
    config.write_text("optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9, "
                      "weight_decay=0.0001), paramwise_cfg=dict(bias_lr_mult=2., bias_decay_mult=0.))\n")
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = tmp_path / "rules.yaml"
    args = parser.parse_args(["mmengine", str(config), "--model", "resnet18", "--num-classes", "3", "-o", str(out)])
    assert command.run(args) == 0
    err = capsys.readouterr().err
    assert "62 of 62 tensors the same" in err and "fc.bias" in err
    assert "bias_lr_mult" in out.read_text()


def test_an_amp_wrapper_and_an_mmcv_style_config_read_the_same(tmp_path: Path) -> None:
    new = tmp_path / "new.py"
    new.write_text("optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic', clip_grad=dict(max_norm=1.0), "
                   "optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4), "
                   "paramwise_cfg=dict(norm_decay_mult=0.0))\n")
    old = tmp_path / "old.py"
    old.write_text("optimizer = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4, "
                   "paramwise_cfg=dict(norm_decay_mult=0.0))\n")
    model = torchvision.models.resnet18(num_classes=3)
    texts = [importer.rules(importer.read(str(p))) for p in (new, old)]
    assert texts[0] == texts[1]
    original = importer.peer(importer.read(str(new)), model)
    assert differences(tensor_table(original, model), rules_table(texts[0], torchvision.models.resnet18(num_classes=3),
                                                                  original)) == []
