"""from_optimizer: the rule file it writes gives the hand-written loop's groups back, per tensor,
with the formula recovered where the lrs follow one."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from transformers import BertConfig, BertForSequenceClassification

import lrrules
from lrrules.capture import differences, from_optimizer, rules_table, tensor_table

TINY_BERT = Path(__file__).parent.parent / "examples" / "integrations" / "tiny-bert"


def resnet() -> torch.nn.Module:
    return timm.create_model("resnet18", pretrained=False, num_classes=2)


def captured(original: object, model: torch.nn.Module, fresh: torch.nn.Module) -> str:
    text = from_optimizer(original, model)
    assert differences(tensor_table(original, model), rules_table(text, fresh, original)) == []
    return text


def tutorial_per_tensor(model: torch.nn.Module) -> list[dict[str, object]]:
    """The classic tutorial's loop: 0.01 at the output end, times 0.9 for every tensor toward the input."""
    names = [n for n, _ in model.named_parameters()][::-1]
    lr, groups = 1e-2, []
    for name in names:
        groups.append({"params": [p for n, p in model.named_parameters() if n == name and p.requires_grad], "lr": lr})
        lr *= 0.9
    return groups


def tutorial_per_module(model: torch.nn.Module) -> list[dict[str, object]]:
    """The same tutorial's second loop: the lr falls by 0.9 where the top-level module changes."""
    names = [n for n, _ in model.named_parameters()][::-1]
    lr, groups, previous = 1e-2, [], names[0].split(".")[0]
    for name in names:
        if name.split(".")[0] != previous:
            lr *= 0.9
        previous = name.split(".")[0]
        groups.append({"params": [p for n, p in model.named_parameters() if n == name and p.requires_grad], "lr": lr})
    return groups


@pytest.mark.parametrize("loop, layering", [(tutorial_per_tensor, "{by: tensor}"),
                                            (tutorial_per_module, "{by: module, level: 1}")])
def test_the_tutorial_loops_become_one_formula(loop: object, layering: str) -> None:
    model = resnet()
    text = captured(torch.optim.SGD(loop(model), lr=0.1, momentum=0.9), model, resnet())  # type: ignore[operator]
    assert f"layers: {layering}" in text
    assert 'lr_mult: "0.9 ** depth"' in text and "  lr: 0.01\n" in text
    assert "name: lr-" not in text  # no literal lr rule: the formula gives every tensor
    assert "momentum: 0.9" in text


def bert() -> torch.nn.Module:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig.from_pretrained(TINY_BERT, num_labels=2))


def bert_llrd(model: torch.nn.Module, base: float = 2e-5, decay: float = 0.9) -> list[dict[str, object]]:
    """The usual BERT LLRD loop: the head at 3x, the top layer at the base lr, each layer below 0.9x,
    the embeddings last; no decay on biases and LayerNorm weights."""
    no_decay = ("bias", "LayerNorm.weight")
    named = list(model.named_parameters())
    groups: list[dict[str, object]] = []

    def add(prefix: str, lr: float) -> None:
        for wd, keep in ((0.01, False), (0.0, True)):
            params = [p for n, p in named if n.startswith(prefix) and any(k in n for k in no_decay) == keep]
            groups.append({"params": params, "lr": lr, "weight_decay": wd})

    add("classifier", base * 3)
    add("bert.pooler", base * 3)
    lr = base
    for i in reversed(range(model.config.num_hidden_layers)):
        add(f"bert.encoder.layer.{i}.", lr)
        lr *= decay
    add("bert.embeddings", lr)
    return groups


def test_a_bert_llrd_loop_is_a_formula_and_a_head_rule() -> None:
    model = bert()
    text = captured(torch.optim.AdamW(bert_llrd(model)), model, bert())
    assert "layers: {by: blocks}" in text and '"0.9 ** (depth - 1)"' in text  # the top layer is depth 1
    assert 'match: ["bert.pooler.*", "classifier.*"], lr: 6.000000000000001e-05' in text  # the head's 3x, literal
    assert "weight_decay: 0.01" in text


def test_a_muon_split_is_two_optimizers() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    def llama() -> torch.nn.Module:
        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig.from_pretrained(TINY_BERT.parent / "tiny-llama"))

    model = llama()
    hidden = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n and "lm_head" not in n]
    rest = [p for n, p in model.named_parameters() if not any(p is h for h in hidden)]
    optimizers = [torch.optim.Muon(hidden, lr=0.02, weight_decay=0.1), torch.optim.AdamW(rest, lr=3e-4, weight_decay=0.1)]
    text = captured(optimizers, model, llama())
    assert "optimizer: {type: AdamW}" in text and "muon: {type: \"Muon\", lr: 0.02" in text


@pytest.mark.parametrize("family", ["vit_tiny_patch16_224", "convnext_atto"])
def test_timm_layer_decay_groups(family: str) -> None:
    from timm.optim import param_groups_layer_decay

    def make() -> torch.nn.Module:
        small = {"depth": 4, "img_size": 32, "patch_size": 8} if family.startswith("vit") else {}
        return timm.create_model(family, pretrained=False, num_classes=3, **small)

    model = make()
    groups = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.75)
    text = captured(torch.optim.AdamW(groups, lr=1e-3), model, make())
    assert "0.75 ** depth" in text and "{by: timm}" in text


def test_frozen_tensors_are_those_in_no_group() -> None:
    model = resnet()
    groups = [{"params": [p for n, p in model.named_parameters() if not n.startswith(("conv1", "bn1"))], "lr": 0.1}]
    text = captured(torch.optim.SGD(groups), model, resnet())
    assert "freeze: true" in text


def test_a_formula_loses_to_literal_rules_when_it_explains_nothing() -> None:
    model = resnet()
    named = dict(model.named_parameters())
    groups = [{"params": [named["fc.weight"], named["fc.bias"]], "lr": 0.1},
              {"params": [p for n, p in named.items() if not n.startswith("fc.")], "lr": 0.01}]
    text = captured(groups, model, resnet())
    assert "depth" not in text and "{name: lr-head, match: {role: head}, lr: 0.1}" in text
