"""lrrules import hf: the written file gives the groups transformers' own Trainer.create_optimizer
makes (its get_decay_parameter_names), on Hugging Face model classes built from tiny configs."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
import transformers as tf

from lrrules.capture import differences, rules_table, tensor_table
from lrrules.importers import hf as importer

SIZE = {"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 37, "max_position_embeddings": 64}


def tiny(make: Callable[[], torch.nn.Module]) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        return make()
    return build


MODELS = {
    "bert": tiny(lambda: tf.BertForSequenceClassification(tf.BertConfig(**SIZE, num_labels=2))),
    "roberta": tiny(lambda: tf.RobertaForSequenceClassification(tf.RobertaConfig(**SIZE, num_labels=2))),
    "gpt2": tiny(lambda: tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=2, n_positions=64))),
    "llama": tiny(lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**SIZE, num_key_value_heads=2))),
    "t5": tiny(lambda: tf.T5ForConditionalGeneration(tf.T5Config(vocab_size=99, d_model=32, d_ff=37, num_layers=2,
                                                                 num_heads=2, d_kv=16))),
    "distilbert": tiny(lambda: tf.DistilBertForSequenceClassification(tf.DistilBertConfig(
        vocab_size=99, dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=64))),
}
ARGS = {"learning_rate": 2e-5, "weight_decay": 0.01, "adam_beta2": 0.98, "adam_epsilon": 1e-6}


@pytest.mark.parametrize("family", list(MODELS))
def test_the_written_file_gives_the_trainers_own_groups(family: str) -> None:
    model = MODELS[family]()
    text = importer.rules(ARGS, model)
    original = importer.peer(ARGS, model)
    assert differences(tensor_table(original, model), rules_table(text, MODELS[family](), original)) == []


def usual_llrd(model: torch.nn.Module, base: float, decay: float, wd: float) -> list[dict[str, Any]]:
    """The BERT/RoBERTa recipe as it is usually written: the head at the base lr, layer by layer down
    from the top, each decay times the one above, the embeddings last; no decay on biases and LayerNorms."""
    named = list(model.named_parameters())
    layers = model.config.num_hidden_layers
    groups: list[dict[str, Any]] = []

    def add(test: Callable[[str], bool], lr: float) -> None:
        for keep, w in ((False, wd), (True, 0.0)):
            params = [p for n, p in named if test(n) and (("bias" in n or "LayerNorm" in n) == keep)]
            groups.append({"params": params, "lr": lr, "weight_decay": w})

    add(lambda n: "pooler" in n or "classifier" in n, base)
    lr = base
    for i in reversed(range(layers)):
        lr *= decay
        add(lambda n, i=i: f"encoder.layer.{i}." in n, lr)  # type: ignore[misc]
    add(lambda n: "embeddings" in n, lr * decay)
    return groups


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_llrd_is_the_usual_recipe(family: str) -> None:
    model = MODELS[family]()
    config = {**ARGS, "optim": "adamw_torch", "llrd": 0.8}
    text = importer.rules(config, model)
    assert '"0.8 ** depth"' in text
    loop = torch.optim.AdamW(usual_llrd(model, 2e-5, 0.8, 0.01), betas=(0.9, 0.98), eps=1e-6)
    assert differences(tensor_table(loop, model), rules_table(text, MODELS[family](), loop)) == []
    original = importer.peer(config, model)
    assert differences(tensor_table(loop, model), tensor_table(original, model)) == []


def test_an_optim_it_cannot_import_is_named() -> None:
    with pytest.raises(Exception, match="not a torch.optim class"):
        importer.rules({**ARGS, "optim": "adafactor"})
