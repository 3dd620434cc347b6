"""lrrules import axolotl: LoRA+ as rules, against peft's own create_loraplus_optimizer on peft LoRA
models of several families (Llama, BERT, GPT-2's Conv1D, OPT; LoRA on embeddings, modules_to_save,
trained biases), and lr_groups against Axolotl's loop as its source reads."""

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
        return get_peft_model(base, LoraConfig(r=4, target_modules=targets))
    return make


def bert() -> torch.nn.Module:
    torch.manual_seed(0)
    base = tf.BertForSequenceClassification(tf.BertConfig.from_pretrained(TINY / "tiny-bert", num_labels=2))
    config = LoraConfig(r=4, target_modules=["query", "value"], modules_to_save=["classifier", "LayerNorm"], bias="all")
    return get_peft_model(base, config)


def gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    base = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=2, n_positions=64))
    config = LoraConfig(r=4, target_modules=["c_attn", "c_proj", "wte"], fan_in_fan_out=True, bias="lora_only")
    return get_peft_model(base, config)


def opt() -> torch.nn.Module:
    torch.manual_seed(0)
    base = tf.OPTForCausalLM(tf.OPTConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, ffn_dim=37,
                                          num_attention_heads=2, max_position_embeddings=64, word_embed_proj_dim=32))
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj", "fc1"], modules_to_save=["final_layer_norm"])
    return get_peft_model(base, config)


def bert_embeddings() -> torch.nn.Module:
    torch.manual_seed(0)
    base = tf.BertForSequenceClassification(tf.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64, num_labels=3))
    config = LoraConfig(r=4, target_modules=["word_embeddings", "query", "key", "value", "dense"],
                        modules_to_save=["classifier"])
    return get_peft_model(base, config)


CASES: list[tuple[str, dict[str, Any], Callable[[], torch.nn.Module]]] = [
    ("llama attention", {"learning_rate": 2e-4, "loraplus_lr_ratio": 16}, llama(["q_proj", "v_proj"])),
    ("llama with embedding", {"learning_rate": 1e-4, "loraplus_lr_ratio": 8, "loraplus_lr_embedding": 5e-6},
     llama(["q_proj", "k_proj", "embed_tokens"])),
    ("bert biases and norms", {"learning_rate": 3e-4, "loraplus_lr_ratio": 4, "loraplus_weight_decay": 0.01}, bert),
    ("gpt2 conv1d and wte", {"learning_rate": 5e-5, "loraplus_lr_ratio": 20, "loraplus_lr_embedding": 1e-5,
                             "loraplus_weight_decay": 0.1}, gpt2),
    ("opt with a saved norm, default embedding lr", {"learning_rate": 1e-4, "loraplus_lr_ratio": 16,
                                                      "adam_epsilon": 1e-6}, opt),
    ("bert word embeddings and head", {"learning_rate": 2e-4, "loraplus_lr_ratio": 8, "loraplus_lr_embedding": 3e-6,
                                       "loraplus_weight_decay": 0.01}, bert_embeddings),
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


def lr_groups_loop(config: dict[str, Any], model: torch.nn.Module) -> list[dict[str, Any]]:
    """Axolotl's create_optimizer_grouped_parameters as its source reads, one group per tensor."""
    decay = set(tf.Trainer.get_decay_parameter_names(None, model))  # type: ignore[arg-type]
    lr, out = config["learning_rate"], []
    for name, p in model.named_parameters():
        if name.endswith("modules_to_save.default.weight") or "embed_tokens" in name or "lm_head" in name:
            settings = {"lr": config.get("embedding_lr", lr), "weight_decay": 0.0}
        elif name in decay:
            first = next((g for m in [m for g in config["lr_groups"] for m in g["modules"]] if m in name
                          for g in config["lr_groups"] if m in g["modules"]), None)
            settings = {"lr": first["lr"] if first else lr, "weight_decay": config["weight_decay"]}
        else:
            settings = {"lr": lr, "weight_decay": 0.0}
        out.append({"params": [p], **settings})
    return out


LR_GROUPS = [
    {"learning_rate": 2e-5, "weight_decay": 0.01, "embedding_lr": 1e-6,
     "lr_groups": [{"name": "o_proj", "modules": ["self_attn.o_proj"], "lr": 1e-6},
                   {"name": "mlp", "modules": ["mlp.", "layers.1."], "lr": 5e-5}]},
    {"learning_rate": 1e-4, "weight_decay": 0.1,  # the first module found in the name decides: layers.0. is first
     "lr_groups": [{"name": "first", "modules": ["layers.0."], "lr": 1e-5},
                   {"name": "attn", "modules": ["self_attn", "norm"], "lr": 3e-4}]},
]


@pytest.mark.parametrize("config", LR_GROUPS)
def test_lr_groups_give_axolotls_groups(config: dict[str, Any]) -> None:
    model = tf.LlamaForCausalLM(tf.LlamaConfig.from_pretrained(TINY / "tiny-llama"))
    text = importer.rules(config)
    loop = torch.optim.AdamW(lr_groups_loop(config, model), lr=config["learning_rate"])
    fresh = tf.LlamaForCausalLM(tf.LlamaConfig.from_pretrained(TINY / "tiny-llama"))
    assert differences(tensor_table(loop, model), rules_table(text, fresh, loop)) == []
    assert differences(tensor_table(loop, model), tensor_table(importer.peer(config, model), model)) == []
