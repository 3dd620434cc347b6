"""lrrules import regex-list: an ordered first-match list becomes order-free rules that give every
tensor what the first matching entry gives it. Checked against a first-match loop written here from
the peers' documented semantics (torchtitan is not installed here, nor NeMo or Megatron)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import pytest
import timm
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lrrules.capture import differences, rules_table, tensor_table
from lrrules.importers import regex_list as importer

TINY_LLAMA = Path(__file__).parent.parent / "examples" / "integrations" / "tiny-llama"


def first_match(config: dict[str, Any], model: torch.nn.Module) -> list[dict[str, Any]]:
    """One group per tensor: the first entry whose regex is found in the name, else the defaults."""
    entries = next(config[k] for k in ("groups", "param_group_overrides", "overrides_config") if k in config)
    groups = []
    for name, param in model.named_parameters():
        entry = next((e for e in entries if re.search(e["pattern"], name)), {})
        lr = entry.get("lr", config["lr"] * entry.get("lr_mult", 1.0))
        wd = entry.get("weight_decay", config.get("weight_decay", 0.0) * entry.get("wd_mult", 1.0))
        extra = {k: v for k, v in entry.items() if k not in ("pattern", "lr", "lr_mult", "weight_decay", "wd_mult")}
        groups.append({"params": [param], "lr": lr, "weight_decay": wd, **extra})
    return groups


def llama() -> torch.nn.Module:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig.from_pretrained(TINY_LLAMA))


def vit() -> torch.nn.Module:
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, depth=3, img_size=32, patch_size=8)


CASES: dict[str, tuple[dict[str, Any], Callable[[], torch.nn.Module]]] = {
    # torchtitan-style: embeddings and output apart, norms without decay; the order matters:
    # "norm" also matches model.norm, which the earlier "lm_head|embed" entry does not.
    "torchtitan llama": ({"lr": 3e-4, "weight_decay": 0.1, "groups": [
        {"pattern": r"embed_tokens", "lr_mult": 0.5}, {"pattern": r"lm_head", "lr": 1e-3},
        {"pattern": r"norm", "weight_decay": 0.0}]}, llama),
    # NeMo Automodel param_group_overrides: overlapping patterns, the broad one last
    "nemo overlapping": ({"lr": 1e-4, "weight_decay": 0.01, "param_group_overrides": [
        {"pattern": r"layers\.1\.", "lr": 5e-5}, {"pattern": r"self_attn", "lr_mult": 2.0},
        {"pattern": r"layers\.", "lr_mult": 0.5, "wd_mult": 2.0}]}, llama),
    # Megatron overrides_config: wd_mult on biases and norms, lr_mult on the head
    "megatron vit": ({"lr": 1e-3, "weight_decay": 0.05, "overrides_config": [
        {"pattern": r"^head\.", "lr_mult": 10.0}, {"pattern": r"(bias|norm)", "wd_mult": 0.0}]}, vit),
    "anchored and an option": ({"lr": 1e-3, "weight_decay": 0.05, "optimizer": "AdamW", "groups": [
        {"pattern": r"^blocks\.2\.", "lr_mult": 1.0, "betas": [0.9, 0.95]}, {"pattern": r"^blocks\.", "lr_mult": 0.5},
        {"pattern": r"^(cls_token|pos_embed)$", "weight_decay": 0.0}]}, vit),
    "an entry shadowed by an earlier one": ({"lr": 0.01, "groups": [
        {"pattern": r"\.", "lr_mult": 0.1}, {"pattern": r"^blocks", "lr_mult": 100.0}]}, vit),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_rules_give_what_the_first_match_gives(name: str) -> None:
    config, make = CASES[name]
    model = make()
    text = importer.rules(config)
    expected = tensor_table(first_match(config, model), model)
    assert differences(expected, rules_table(text, make(), first_match(config, model))) == []
    assert differences(expected, tensor_table(importer.peer(config, model), model)) == []


def test_each_entry_overrides_the_next() -> None:
    text = importer.rules(CASES["torchtitan llama"][0])
    assert "overrides: [entry-2]" in text and "overrides: [entry-3]" in text


def test_a_list_without_a_pattern_or_a_misspelt_key_is_refused() -> None:
    with pytest.raises(Exception, match="no pattern"):
        importer.rules({"lr": 1.0, "groups": [{"lr_mult": 2}]})
    with pytest.raises(Exception, match="did you mean 'weight_decay'"):
        importer.rules({"lr": 1.0, "weight_decy": 0.1, "groups": []})
