"""lrrules reproduces timm's layer decay exactly: the same lr_scale and weight decay per parameter."""

from __future__ import annotations

import lrrules
import pytest
import timm
import torch
from timm.optim import param_groups_layer_decay

from lrrules.language import RuleSet

FAMILIES = [
    "vit_tiny_patch16_224",
    "deit_tiny_distilled_patch16_224",
    "convnext_atto",
    "resnet18",
    "efficientnet_b0",
    "swin_tiny_patch4_window7_224",
    "mobilenetv3_small_050",
    "regnetx_002",
]


def layer_decay_rules(no_weight_decay: list[str], decay: float, weight_decay: float) -> RuleSet:
    return RuleSet.model_validate({
        "version": 1,
        "defaults": {"lr": 1e-3, "weight_decay": weight_decay},
        "layers": {"by": "timm"},
        "rules": [{"name": "layer-decay", "match": "*", "lr_mult": f"{decay} ** depth"}],
        "modifiers": [{"name": "no-decay", "match": {"any": [{"ndim": [0, 1]}, *no_weight_decay]},
                       "weight_decay": 0}],
    })


@pytest.mark.parametrize("name", FAMILIES)
def test_layer_decay_equals_timm_for_every_parameter(name: str) -> None:
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=10)
    no_wd = sorted(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else []
    expected = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.7,
                                          no_weight_decay_list=no_wd):
        for p in group["params"]:
            expected[names[id(p)]] = (group["lr_scale"], group["weight_decay"])

    plan = lrrules.resolve(layer_decay_rules(no_wd, 0.7, 0.05), model)

    assert plan.ok and not plan.frozen
    got = {a.name: (a.lr_scale, a.weight_decay) for a in plan.params}
    assert got == expected
    assert len({s for s, _ in got.values()}) > 2, "the model has several layers"


def test_layer_decay_survives_torch_compile() -> None:
    with torch.device("meta"):
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    rules = layer_decay_rules(["pos_embed", "cls_token"], 0.75, 0.05)
    bare = {a.name: (a.lr, a.weight_decay) for a in lrrules.resolve(rules, model).params}
    compiled = {a.name: (a.lr, a.weight_decay) for a in lrrules.resolve(rules, torch.compile(model)).params}
    assert compiled == bare
