"""Every shipped example on the real size of the model it is written for (issue 20): bert-base and
bert-large, timm's resnet18 and vit_base_patch16_224, a Llama at Llama-3-8B's sizes, all on the meta
device. The expected settings are written here by hand from each file's header (the documented
multipliers), never read from lrrules; and `check --strict` passes on each.

A 2-layer stand-in hides a layer count written into the file: on bert-base the old
bert-layerwise-decay.yaml trained the top encoder layer at 0.8 ** (2 - 11) = 7.45x the base lr.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import lrrules
from lrrules.cli import main

pytestmark = pytest.mark.slow  # models at real size (on meta), and the CLI building them again

EXAMPLES = Path(__file__).parent.parent / "examples"


def bert_config(size: str) -> Any:
    import transformers as tf

    layers, hidden = {"base": (12, 768), "large": (24, 1024)}[size]
    return tf.BertConfig(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=hidden // 64,
                         intermediate_size=4 * hidden, num_labels=2, architectures=["BertForSequenceClassification"])


def llama_config() -> Any:
    import transformers as tf

    return tf.LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                          num_attention_heads=32, num_key_value_heads=8, architectures=["LlamaForCausalLM"])


def hf_model(config: Any) -> torch.nn.Module:
    import transformers as tf

    with torch.device("meta"):
        return getattr(tf, config.architectures[0])(config)


def timm_model(name: str, classes: int) -> torch.nn.Module:
    import timm

    with torch.device("meta"):
        return timm.create_model(name, pretrained=False, num_classes=classes)


# --- what each file's header says, per tensor ---------------------------------------------------


def bert_layer_decay(model: torch.nn.Module) -> dict[str, tuple[float, float]]:
    """Head and pooler at 5e-5, encoder layer i at 5e-5 * 0.8 ** (L - i), embeddings 0.8 ** (L + 1);
    no decay on biases and LayerNorm."""
    layers = model.config.num_hidden_layers
    out = {}
    for name, _ in model.named_parameters():
        if name.startswith(("classifier.", "bert.pooler.")):
            lr = 5e-5
        elif found := re.match(r"bert\.encoder\.layer\.(\d+)\.", name):
            lr = 5e-5 * 0.8 ** (layers - int(found.group(1)))
        else:
            assert name.startswith("bert.embeddings."), name
            lr = 5e-5 * 0.8 ** (layers + 1)
        out[name] = (lr, 0.0 if name.endswith(".bias") or "LayerNorm" in name else 0.01)
    return out


def stage(name: str) -> int | None:
    found = re.match(r"layer(\d)\.", name)
    return int(found.group(1)) if found else None


def resnet_discriminative(model: torch.nn.Module) -> dict[str, tuple[float, float] | None]:
    """fc at 10x 1e-3, stage N at 0.5 ** (4 - N), the stem frozen (None); no decay on 1-D tensors."""
    out: dict[str, tuple[float, float] | None] = {}
    for name, p in model.named_parameters():
        decay = 0.0 if p.ndim <= 1 else 0.05
        n = stage(name)
        out[name] = ((1e-2, decay) if name.startswith("fc.") else None if n is None
                     else (1e-3 * 0.5 ** (4 - n), decay))
    return out


def resnet_gradual(model: torch.nn.Module) -> dict[str, tuple[float, float] | None]:
    """resnet_discriminative with the stem trained at 0.5 ** 5 instead of frozen."""
    out = resnet_discriminative(model)
    for name, p in model.named_parameters():
        if name.startswith(("conv1.", "bn1.")):
            out[name] = (1e-3 * 0.5 ** 5, 0.0 if p.ndim <= 1 else 0.05)
    return out


def resnet_frozen_backbone(model: torch.nn.Module) -> dict[str, tuple[float, float] | None]:
    return {n: (0.1, 1e-4) if n.startswith("fc.") else None for n, _ in model.named_parameters()}


def resnet_head_warmup(model: torch.nn.Module) -> dict[str, tuple[float, float] | None]:
    return {n: (1e-2 if n.startswith("fc.") else 1e-3, 0.05) for n, _ in model.named_parameters()}


def resnet_per_tensor(model: torch.nn.Module) -> dict[str, tuple[float, float]]:
    names = [n for n, _ in model.named_parameters()]
    return {n: (0.01 * 0.9 ** (len(names) - 1 - i), 0.0) for i, n in enumerate(names)}


def resnet_per_module(model: torch.nn.Module) -> dict[str, tuple[float, float]]:
    tops = list(dict.fromkeys(n.split(".")[0] for n, _ in model.named_parameters()))
    return {n: (0.01 * 0.9 ** (len(tops) - 1 - tops.index(n.split(".")[0])), 0.0) for n, _ in model.named_parameters()}


def vit_layer_decay(model: torch.nn.Module) -> dict[str, tuple[float, float]]:
    """timm's layer ids for a ViT: patch_embed, cls_token and pos_embed 0, blocks.i i + 1, the final
    norm with the last block (12: its group_matcher's ``(r'^norm', (99999,))`` sorts right after it),
    the head 13; lr x 0.75 ** (13 - id); no decay on 1-D tensors, pos_embed and cls_token."""
    out = {}
    for name, p in model.named_parameters():
        found = re.match(r"blocks\.(\d+)\.", name)
        layer = (int(found.group(1)) + 1 if found else 0 if name.startswith(("patch_embed.", "cls_token", "pos_embed"))
                 else 12 if name.startswith("norm.") else 13)
        out[name] = (1e-3 * 0.75 ** (13 - layer), 0.0 if p.ndim <= 1 or name in ("pos_embed", "cls_token") else 0.05)
    return out


def no_decay_bias_norm(model: torch.nn.Module) -> dict[str, tuple[float, float]]:
    norms = {f"{m}.{n}" if m else n for m, module in model.named_modules() if "Norm" in type(module).__name__
             for n, _ in module.named_parameters(recurse=False)}
    return {n: (1e-3, 0.0 if n.endswith(".bias") or n in norms else 0.05) for n, _ in model.named_parameters()}


HIDDEN = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def muon_adamw(model: torch.nn.Module) -> dict[str, tuple[float, float, str]]:
    """torch's Muon documentation's split: the hidden matrices to Muon at 0.02, embeddings, head and
    norms to AdamW at 3e-4; weight decay 0.1 on both."""
    return {n: (0.02, 0.1, "muon") if n.split(".")[-2] in HIDDEN else (3e-4, 0.1, "default")
            for n, _ in model.named_parameters()}


# (file, the model the header means, its CLI spec, the expectation)
Case = tuple[str, Callable[[], torch.nn.Module], Callable[[Path], list[str]], Callable[[torch.nn.Module], dict]]


def hf_spec(config: Callable[[], Any], classes: int | None = None) -> Callable[[Path], list[str]]:
    def spec(tmp: Path) -> list[str]:
        (tmp / "config.json").write_text(json.dumps(config().to_dict()))
        return ["--model", f"hf:{tmp}"] + (["--num-classes", str(classes)] if classes else [])
    return spec


def timm_spec(name: str, classes: int) -> Callable[[Path], list[str]]:
    return lambda tmp: ["--model", name, "--num-classes", str(classes)]


def resnet18() -> torch.nn.Module:
    return timm_model("resnet18", 2)


CASES: dict[str, Case] = {
    "bert-base": ("bert-layerwise-decay.yaml", lambda: hf_model(bert_config("base")),
                  hf_spec(lambda: bert_config("base"), 2), bert_layer_decay),
    "bert-large": ("bert-layerwise-decay.yaml", lambda: hf_model(bert_config("large")),
                   hf_spec(lambda: bert_config("large"), 2), bert_layer_decay),
    "resnet18-discriminative": ("resnet18-discriminative.yaml", resnet18, timm_spec("resnet18", 2),
                                resnet_discriminative),
    "resnet18-gradual-unfreezing": ("resnet18-gradual-unfreezing.yaml", resnet18, timm_spec("resnet18", 2),
                                    resnet_gradual),
    "resnet18-frozen-backbone": ("resnet18-frozen-backbone.yaml", resnet18, timm_spec("resnet18", 2),
                                 resnet_frozen_backbone),
    "resnet18-head-warmup": ("resnet18-head-warmup.yaml", resnet18, timm_spec("resnet18", 2), resnet_head_warmup),
    "resnet18-per-tensor": ("resnet18-layerwise-per-tensor.yaml", resnet18, timm_spec("resnet18", 2),
                            resnet_per_tensor),
    "resnet18-per-module": ("resnet18-layerwise-per-module.yaml", resnet18, timm_spec("resnet18", 2),
                            resnet_per_module),
    "vit-base": ("vit-timm-layer-decay.yaml", lambda: timm_model("vit_base_patch16_224", 10),
                 timm_spec("vit_base_patch16_224", 10), vit_layer_decay),
    "no-decay-resnet18": ("no-decay-bias-norm.json", resnet18, timm_spec("resnet18", 2), no_decay_bias_norm),
    "no-decay-bert-base": ("no-decay-bias-norm.json", lambda: hf_model(bert_config("base")),
                           hf_spec(lambda: bert_config("base"), 2), no_decay_bias_norm),
    "muon-llama-8b": ("muon-adamw.yaml", lambda: hf_model(llama_config()), hf_spec(llama_config), muon_adamw),
}


def test_every_shipped_example_has_a_real_size_case() -> None:
    shipped = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".json")}
    assert shipped == {case[0] for case in CASES.values()}


@pytest.mark.parametrize("case", CASES)
def test_an_example_gives_its_documented_settings_on_the_real_model(case: str, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    file, make, spec, expect = CASES[case]
    model = make()
    plan = lrrules.resolve(lrrules.load(EXAMPLES / file), model)
    assert plan.ok and not plan.warnings()
    expected = expect(model)
    got: dict[str, tuple[float, float, str] | None] = {}
    for a in plan.params:
        assert a.status in ("trainable", "frozen"), a.name
        trains = a.status == "trainable" and a.lr is not None and a.weight_decay is not None and a.group is not None
        got[a.name] = (a.lr, a.weight_decay, plan.groups[a.group].optimizer) if trains else None  # type: ignore[arg-type,index]
    assert set(got) == set(expected)
    for name, want in expected.items():
        have = got[name]
        assert (have is None) == (want is None), name
        if have is not None and want is not None:  # (lr, weight decay[, optimizer route])
            assert have[0] == pytest.approx(want[0], rel=1e-12), name
            assert have[1:len(want)] == tuple(want[1:]), name
    assert main(["check", "--strict", str(EXAMPLES / file), *spec(tmp_path), "--no-cache"]) == 0, capsys.readouterr()


@pytest.mark.parametrize("size", ["base", "large"])
def test_bert_decays_monotonically_from_the_head_down(size: str) -> None:
    model = hf_model(bert_config(size))
    lrs = {a.name: a.lr for a in lrrules.resolve(lrrules.load(EXAMPLES / "bert-layerwise-decay.yaml"), model).params}
    layers = model.config.num_hidden_layers
    by_layer = [lrs[f"bert.encoder.layer.{i}.output.dense.weight"] for i in range(layers)]
    assert by_layer == sorted(by_layer) and len(set(by_layer)) == layers, "each layer above trains faster"
    top, head, embeddings = by_layer[-1], lrs["classifier.weight"], lrs["bert.embeddings.word_embeddings.weight"]
    assert embeddings < by_layer[0] < top < head == 5e-5
    assert top == pytest.approx(0.8 * head, rel=1e-12)


def test_the_gradual_unfreezing_phases_open_one_stage_an_epoch_on_resnet18() -> None:
    plan = lrrules.resolve(lrrules.load(EXAMPLES / "resnet18-gradual-unfreezing.yaml"), resnet18())
    names = [a.name for a in plan.params]
    trains = {epoch: {n for n in names if n not in plan.frozen_at(epoch=epoch)} for epoch in range(4)}
    assert trains[0] == {n for n in names if n.startswith("fc.")}
    assert trains[1] == trains[0] | {n for n in names if n.startswith("layer4.")}
    assert trains[2] == trains[1] | {n for n in names if n.startswith("layer3.")}
    assert trains[3] == set(names)


def test_the_head_warmup_schedule_holds_the_backbone_until_the_head_is_warm() -> None:
    from lrrules.schedules import rule_lambdas

    plan = lrrules.resolve(lrrules.load(EXAMPLES / "resnet18-head-warmup.yaml"), resnet18())
    lambdas = rule_lambdas(plan, total_steps=2000)
    for group, factor in zip(plan.groups, lambdas):
        head = group.params[0].startswith("fc.")
        for step in (0, 249, 499, 500, 1500):
            want = min(1, (step + 1) / 500) if head else (1 if step >= 500 else 0)
            assert factor(step) == pytest.approx(want, rel=1e-12), (group.params[0], step)
