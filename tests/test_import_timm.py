"""lrrules import timm: the written file gives the groups of timm's own create_optimizer_v2 (and so
param_groups_layer_decay) for the same arguments, on several timm families."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import timm

from lrrules.capture import differences, rules_table, tensor_table
from lrrules.importers import timm_args as importer

SMALL = {"vit_tiny_patch16_224": {"depth": 3, "img_size": 32, "patch_size": 8},
         "convnext_atto": {}, "resnet18": {}, "swin_tiny_patch4_window7_224": {"embed_dim": 16, "depths": (2, 2, 2, 2),
                                                                                 "num_heads": (1, 1, 2, 2)},
         "efficientnet_b0": {}, "deit_tiny_distilled_patch16_224": {"depth": 2, "img_size": 32, "patch_size": 8}}


def args(**given: Any) -> dict[str, Any]:
    return {**importer.ARGS, **given}


CASES = [("vit_tiny_patch16_224", args(opt="adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.75)),
         ("convnext_atto", args(opt="adamw", lr=4e-3, weight_decay=0.05, layer_decay=0.8, opt_betas=[0.9, 0.99])),
         ("swin_tiny_patch4_window7_224", args(opt="lamb", lr=5e-3, weight_decay=0.02, layer_decay=0.9)),
         ("deit_tiny_distilled_patch16_224", args(opt="adamw", lr=5e-4, weight_decay=0.05, layer_decay=0.65,
                                                  layer_decay_min_scale=0.3)),
         ("resnet18", args(opt="sgd", lr=0.1, weight_decay=1e-4)),
         ("efficientnet_b0", args(opt="rmsproptf", lr=0.048, weight_decay=1e-5, opt_eps=0.001)),
         ("vit_tiny_patch16_224", args(opt="adamw", lr=1e-3, weight_decay=0.0, layer_decay=0.75))]


@pytest.mark.parametrize("family, config", CASES, ids=[f"{f}-{c['opt']}" for f, c in CASES])
def test_the_written_file_gives_timms_own_groups(family: str, config: dict[str, Any]) -> None:
    def make() -> Any:
        return timm.create_model(family, pretrained=False, num_classes=3, **SMALL[family])

    model = make()
    text = importer.rules(config, model)
    original = importer.peer(config, model)
    assert differences(tensor_table(original, model), rules_table(text, make(), original)) == []


def test_a_command_line_is_read_as_timm_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "args.txt"
    path.write_text("--opt adamw --lr 1e-3 --weight-decay 0.05 --layer-decay 0.75 --epochs 300\n")
    config = importer.read(str(path))
    assert (config["opt"], config["lr"], config["weight_decay"], config["layer_decay"]) == ("adamw", 1e-3, 0.05, 0.75)
    assert '"0.75 ** depth"' in importer.rules(config)
