"""The models and rule files the benchmark runs on: real architectures, built without downloads.

Shapes only matter to resolution, so the models live on the meta device (no memory, no init);
``build`` needs real tensors, so :func:`timm_cpu` builds on the CPU (pretrained=False).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import timm
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
TIMM_MODELS = ("resnet50", "vit_base_patch16_224", "convnext_base")
PRESETS = ("lrrules:muon", "lrrules:llrd", "lrrules:no-decay", "lrrules:mup")


def rule_files() -> list[str]:
    """Every shipped example rule file (relative to the repository root), then the presets."""
    found = [*(ROOT / "examples").glob("*.yaml"), *(ROOT / "examples").glob("*.json"),
             *(ROOT / "examples" / "finetune" / "rules").glob("*.yaml")]
    return [str(p.relative_to(ROOT)) for p in sorted(found)] + list(PRESETS)


def timm_meta(name: str) -> nn.Module:
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False)


def timm_cpu(name: str) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False)


def llama_70b() -> nn.Module:
    """transformers' Llama at Llama-3-70B's sizes (723 tensors), on the meta device."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(num_hidden_layers=80, hidden_size=8192, num_attention_heads=64, num_key_value_heads=8,
                         intermediate_size=28672, vocab_size=128256)
    with torch.device("meta"):
        return LlamaForCausalLM(config)


class FP8Linear(nn.Module):
    """A linear layer as DeepSeek-V3's FP8 checkpoint stores it: ``weight`` and its block scales
    ``weight_scale_inv`` (one per 128x128 block), both parameters, as transformers' FP8 layer has them."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(outputs, inputs, dtype=torch.bfloat16))
        self.weight_scale_inv = nn.Parameter(torch.empty(math.ceil(outputs / 128), math.ceil(inputs / 128)))


class RMSNorm(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(size))


def _mlp(hidden: int, inner: int) -> nn.Module:
    mlp = nn.Module()
    mlp.gate_proj, mlp.up_proj, mlp.down_proj = FP8Linear(hidden, inner), FP8Linear(hidden, inner), FP8Linear(inner, hidden)
    return mlp


def _layer(index: int, experts: int, hidden: int = 7168) -> nn.Module:
    layer, attn = nn.Module(), nn.Module()
    attn.q_a_proj, attn.q_a_layernorm, attn.q_b_proj = FP8Linear(hidden, 1536), RMSNorm(1536), FP8Linear(1536, 24576)
    attn.kv_a_proj_with_mqa, attn.kv_a_layernorm = FP8Linear(hidden, 576), RMSNorm(512)
    attn.kv_b_proj, attn.o_proj = FP8Linear(512, 32768), FP8Linear(16384, hidden)
    layer.self_attn = attn
    if index < 3:  # first_k_dense_replace
        layer.mlp = _mlp(hidden, 18432)
    else:
        moe = nn.Module()
        moe.experts = nn.ModuleList(_mlp(hidden, 2048) for _ in range(experts))
        moe.gate = nn.Module()
        moe.gate.weight = nn.Parameter(torch.empty(experts, hidden))
        moe.gate.e_score_correction_bias = nn.Parameter(torch.empty(experts))
        moe.shared_experts = _mlp(hidden, 2048)
        layer.mlp = moe
    layer.input_layernorm, layer.post_attention_layernorm = RMSNorm(hidden), RMSNorm(hidden)
    return layer


def deepseek_v3(layers: int = 61, experts: int = 256) -> nn.Module:
    """DeepSeek-V3's 61 layers (3 dense, 58 of 256 routed experts and 1 shared) with the names of its
    FP8 checkpoint, about 90k tensors, on the meta device. Hand-written: transformers 5 fuses the
    experts into one 3-D tensor per layer (909 tensors), which no checkpoint of it has. Fewer
    ``layers`` and ``experts`` give a twin with the same names, to find cheaply which files fit."""
    with torch.device("meta"):
        model, inner = nn.Module(), nn.Module()
        inner.embed_tokens = nn.Embedding(129280, 7168)
        inner.layers = nn.ModuleList(_layer(i, experts) for i in range(layers))
        inner.norm = RMSNorm(7168)
        model.model = inner
        model.lm_head = FP8Linear(7168, 129280)
        return model


def meta_workloads(quick: bool = False) -> dict[str, tuple[Callable[[], nn.Module], Callable[[], nn.Module] | None]]:
    """Name -> (the model, a small twin with the same names, or None where the model is cheap)."""
    made = {name: ((lambda n=name: timm_meta(n)), None) for name in TIMM_MODELS}
    twin = lambda: deepseek_v3(layers=5, experts=4)  # noqa: E731
    return made | {"llama-70b": (llama_70b, None), "deepseek-v3": (twin if quick else deepseek_v3, twin)}


def synthetic_names(tensors: int) -> list[tuple[str, tuple[int, ...]]]:
    """``tensors`` (name, shape) pairs, four per block: ``blocks.B.{fc,norm}.{weight,bias}``."""
    parts = (("fc.weight", (64, 64)), ("fc.bias", (64,)), ("norm.weight", (64,)), ("norm.bias", (64,)))
    return [(f"blocks.{i // 4}.{parts[i % 4][0]}", parts[i % 4][1]) for i in range(tensors)]


def synthetic_rules(count: int) -> str:
    """``count`` rules, each claiming one block (half globs, half regexes with a capture and a formula),
    a fallback for the rest, and a no-decay modifier."""
    lines = ["version: 1", "defaults: {lr: 0.1, weight_decay: 0.05}", "rules:"]
    for i in range(count):
        if i % 2:
            lines.append(f"  - {{name: r{i}, match: {{regex: '^blocks\\.{i}\\.(?P<part>fc|norm)\\.'}}, lr_mult: 0.5}}")
        else:
            lines.append(f"  - {{name: r{i}, match: 'blocks.{i}.*', lr_mult: '0.9 ** ndim'}}")
    lines += ["  - {name: rest, fallback: true}", "modifiers:", "  - {name: no-decay, match: {ndim: 1}, weight_decay: 0}"]
    return "\n".join(lines) + "\n"
