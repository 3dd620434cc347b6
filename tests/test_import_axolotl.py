"""lrrules import axolotl: LoRA+ as rules, against peft's own create_loraplus_optimizer on peft LoRA
models (a Llama with LoRA on its attention and embedding, a BERT with a trained LayerNorm and head)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import transformers as tf
from peft import LoraConfig, get_peft_model

from lrrules.capture import differences, rules_table, tensor_table
from lrrules.importers import axolotl as importer

TINY = Path(__file__).parent.parent / "examples" / "integrations"


def llama(targets: list[str]) -> Callable[[], torch.nn.Module]:
    def make() -> torch.nn.Module:
        torch.manual_seed(0)
        base = tf.LlamaForCausalLM(tf.LlamaConfig.from_pretrained(TINY / "tiny-llama"))
        return get_peft_model(base, LoraConfig(r=4, target_modules=targets))  # type: ignore[no-any-return]
    return make


def bert() -> torch.nn.Module:
    torch.manual_seed(0)
    base = tf.BertForSequenceClassification(tf.BertConfig.from_pretrained(TINY / "tiny-bert", num_labels=2))
    config = LoraConfig(r=4, target_modules=["query", "value"], modules_to_save=["classifier", "LayerNorm"], bias="all")
    return get_peft_model(base, config)  # type: ignore[no-any-return]


CASES: list[tuple[str, dict[str, Any], Callable[[], torch.nn.Module]]] = [
    ("llama attention", {"learning_rate": 2e-4, "loraplus_lr_ratio": 16}, llama(["q_proj", "v_proj"])),
    ("llama with embedding", {"learning_rate": 1e-4, "loraplus_lr_ratio": 8, "loraplus_lr_embedding": 5e-6},
     llama(["q_proj", "k_proj", "embed_tokens"])),
    ("bert biases and norms", {"learning_rate": 3e-4, "loraplus_lr_ratio": 4, "loraplus_weight_decay": 0.01}, bert),
]


@pytest.mark.parametrize("name, config, make", CASES, ids=[c[0] for c in CASES])
def test_the_written_file_gives_peft_loraplus_groups(name: str, config: dict[str, Any],
                                                      make: Callable[[], torch.nn.Module]) -> None:
    model = make()
    text = importer.rules(config)
    original = importer.peer(config, model)
    expected = tensor_table(original, model)
    assert differences(expected, rules_table(text, make(), original)) == []
    assert any(s is not None and s["lr"] != config["learning_rate"] for s in expected.values())
