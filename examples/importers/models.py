"""Tiny models for the importer examples in docs/importers.md (``--model examples.importers.models:NAME``),
built from the configs in examples/integrations/: nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import torch

TINY = Path(__file__).resolve().parent.parent / "integrations"


def lora_llama() -> torch.nn.Module:
    """The tiny Llama with LoRA on its attention and its token embedding, as axolotl-loraplus.yaml asks."""
    import transformers
    from peft import LoraConfig, get_peft_model

    base = transformers.LlamaForCausalLM(transformers.LlamaConfig.from_pretrained(TINY / "tiny-llama"))
    model: torch.nn.Module = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "embed_tokens"]))
    return model
