"""`init --layer-decay` on timm models of many families, headed, distilled, multi-headed and headless:
the file resolves cleanly (check --strict) and gives every parameter the lr scale and weight decay
that timm's own ``param_groups_layer_decay`` gives it (with the model's ``no_weight_decay()``)."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest
import timm
import torch
from timm.optim import param_groups_layer_decay

from lrrules.loader import loads
from lrrules.params import collect
from lrrules.resolver import resolve_params
from lrrules.starter import starter

DECAY, WEIGHT_DECAY = 0.7, 0.05

# Each model builds on the meta device in well under a second; the whole set runs in about 15 s.
FAST = [
    ("vit_tiny_patch16_224", {}),
    ("deit_tiny_distilled_patch16_224", {}),
    ("convnext_atto", {}),
    ("resnet18", {"num_classes": 0}),
    ("crossvit_tiny_240", {}),
]
FAMILIES = [
    "beit_base_patch16_224", "cait_xxs24_224", "coat_lite_tiny", "convit_tiny", "convnextv2_atto", "densenet121",
    "dla34", "dpn68", "edgenext_xx_small", "efficientformer_l1", "efficientnet_b0", "eva02_tiny_patch14_224",
    "fastvit_t8", "ghostnet_100", "hrnet_w18_small", "inception_v3", "levit_128s", "maxvit_tiny_rw_224",
    "mixer_b16_224", "mobilenetv2_050", "mobilenetv3_small_050", "mobilevit_xxs", "nfnet_l0", "pit_ti_distilled_224",
    "poolformer_s12", "pvt_v2_b0", "regnetx_002", "regnety_002", "repvgg_a0", "res2net50_14w_8s", "resnest14d",
    "resnet50d", "resnetv2_50", "rexnet_100", "selecsls42b", "swin_tiny_patch4_window7_224",
    "swinv2_tiny_window8_256", "tiny_vit_5m_224", "tnt_s_patch16_224", "twins_svt_small", "vgg11",
    "visformer_tiny", "xcit_nano_12_p16_224", "hiera_tiny_224", "deit3_small_patch16_224",
]
HEADLESS = ["vit_tiny_patch16_224", "convnext_atto", "efficientnet_b0", "deit_tiny_distilled_patch16_224",
            "swin_tiny_patch4_window7_224", "levit_128s", "regnetx_002"]

CASES = [pytest.param(n, a, id=f"{n}{'-headless' if a else ''}") for n, a in FAST] + [
    pytest.param(n, {}, id=n) for n in FAMILIES
] + [pytest.param(n, {"num_classes": 0}, id=f"{n}-headless") for n in HEADLESS]


def timm_settings(model: Any) -> dict[str, tuple[float, float]]:
    """Each parameter's (lr_scale, weight_decay) as timm's layer decay gives it."""
    no_wd = sorted(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else []
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for group in param_groups_layer_decay(model, weight_decay=WEIGHT_DECAY, layer_decay=DECAY,
                                          no_weight_decay_list=no_wd):
        for p in group["params"]:
            out[names[id(p)]] = (group["lr_scale"], group["weight_decay"])
    return out


def classifier_names(model: Any) -> set[str]:
    """The parameters under every classifier the model's pretrained_cfg names."""
    classifier = model.pretrained_cfg.get("classifier")
    prefixes = list(classifier) if isinstance(classifier, (list, tuple)) else [classifier]
    return {n for n, _ in model.named_parameters() for c in prefixes if c and (n == c or n.startswith(c + "."))}


@pytest.mark.parametrize("name,args", CASES)
def test_init_layer_decay_equals_timms_and_checks_strict(name: str, args: dict[str, Any]) -> None:
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, **args)
    params, tensors = collect(model)

    # As timm: head multiplier 1, so every lr scale is timm's.
    text = starter(params, model, name, weight_decay=WEIGHT_DECAY, layer_decay=DECAY, head_mult=1.0,
                   no_decay_norm_bias=True)
    plan = resolve_params(loads(text, "init.yaml"), params, tensors, model)
    assert plan.ok and not plan.warnings(), (text, plan.problems(), plan.warnings())
    got = {a.name: (a.lr_scale, a.weight_decay) for a in plan.params}
    expected = timm_settings(model)
    assert got.keys() == expected.keys()
    wrong = {n: (got[n], expected[n]) for n in got if got[n] != pytest.approx(expected[n], rel=1e-9)}
    assert not wrong, wrong

    # And with a fast head: exactly the classifier parameters get it, none invented where there is none.
    text = starter(params, model, name, layer_decay=DECAY, head_mult=10.0)
    plan = resolve_params(loads(text, "init.yaml"), params, tensors, model)
    assert plan.ok and not plan.warnings(), (text, plan.warnings())
    head = {a.name for a in plan.params if a.rule == "head"}
    assert head == classifier_names(model)
    assert bool(head) == bool(model.num_classes), "a headless model (num_classes=0) gets no invented head"


def test_no_weight_decay_wildcards_and_glob_characters_in_names_are_honoured() -> None:
    from torch import nn

    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_parameter("scale[0]", nn.Parameter(torch.ones(3, 3)))
            self.blocks = nn.ModuleList([nn.Linear(3, 3) for _ in range(3)])
            self.head = nn.Linear(3, 2)

        def no_weight_decay(self) -> set[str]:
            return {"scale[0]", "blocks.*.weight", "nothing.*"}

    model = Odd()
    params, tensors = collect(model)
    text = starter(params, model, "odd", no_decay_norm_bias=True)
    plan = resolve_params(loads(text, "init.yaml"), params, tensors, model)
    assert plan.ok and not plan.warnings(), text
    no_wd = {a.name for a in plan.params if a.weight_decay == 0}
    wanted = {n for n, p in model.named_parameters()
              if p.ndim <= 1 or n == "scale[0]" or fnmatch.fnmatchcase(n, "blocks.*.weight")}
    assert no_wd == wanted
