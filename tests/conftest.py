"""Shared fixtures: tiny models and a way to describe parameters without a model."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from lrrules.params import ParamInfo

#: The repository's root: the tests name shipped files (examples/, lrrules/presets/) from it.
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _from_the_repository_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts in the repository's root, wherever pytest was started from (a test that
    needs another folder changes to it itself)."""
    monkeypatch.chdir(ROOT)
    yield


def params(*specs: Sequence[Any]) -> list[ParamInfo]:
    """ParamInfos from ``(name, shape, module[, requires_grad])`` tuples, in order."""
    out = []
    for i, spec in enumerate(specs):
        name, shape, module, *rest = spec
        out.append(ParamInfo(name, tuple(shape), module, bool(rest[0]) if rest else True, i))
    return out


class TinyNet(nn.Module):
    """conv1/bn1 stem, two stages, a head: the shape of a ResNet in 13 tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.layer2 = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x)).relu()
        x = self.layer2(self.layer1(x)).relu()
        return self.fc(x.mean((2, 3)))


class TiedLM(nn.Module):
    """An embedding whose weight is also the output projection's (tied weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.embed(x)))


@pytest.fixture
def tiny() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def tied() -> TiedLM:
    torch.manual_seed(0)
    return TiedLM()


def tiny_hf_config(kind: str) -> Any:
    """A tiny Hugging Face config of each family the tests use, built locally (nothing downloaded)."""
    import transformers as tf

    small = {"vocab_size": 64}
    if kind == "gpt2":
        return tf.GPT2Config(n_layer=3, n_embd=16, n_head=2, n_positions=32, architectures=["GPT2LMHeadModel"],
                             bos_token_id=0, eos_token_id=0, **small)
    if kind == "t5":
        return tf.T5Config(num_layers=3, num_decoder_layers=3, d_model=16, d_ff=32, d_kv=8, num_heads=2,
                           architectures=["T5ForConditionalGeneration"], decoder_start_token_id=0, **small)
    if kind == "bert":
        return tf.BertConfig(num_hidden_layers=4, hidden_size=16, num_attention_heads=2, intermediate_size=32,
                             architectures=["BertForSequenceClassification"], num_labels=3, **small)
    if kind == "llama":
        return tf.LlamaConfig(num_hidden_layers=3, hidden_size=16, num_attention_heads=2, num_key_value_heads=2,
                              intermediate_size=32, architectures=["LlamaForCausalLM"], **small)
    if kind == "clip":
        return tf.CLIPConfig(text_config={"num_hidden_layers": 3, "hidden_size": 16, "num_attention_heads": 2,
                                          "intermediate_size": 32, "vocab_size": 64},
                             vision_config={"num_hidden_layers": 4, "hidden_size": 16, "num_attention_heads": 2,
                                            "intermediate_size": 32, "image_size": 32, "patch_size": 8},
                             projection_dim=8, architectures=["CLIPModel"])
    attention = {"num_hidden_layers": 3, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}
    seq2seq = {"encoder_layers": 3, "decoder_layers": 3, "d_model": 16, "encoder_attention_heads": 2,
               "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32}
    more = {
        "distilbert": lambda: tf.DistilBertConfig(n_layers=3, dim=16, n_heads=2, hidden_dim=32, **small,
                                                  architectures=["DistilBertForSequenceClassification"]),
        "roberta": lambda: tf.RobertaConfig(**attention, **small, architectures=["RobertaForMaskedLM"]),
        "bart": lambda: tf.BartConfig(**seq2seq, **small, architectures=["BartForConditionalGeneration"]),
        "opt": lambda: tf.OPTConfig(num_hidden_layers=3, hidden_size=16, num_attention_heads=2, ffn_dim=32,
                                    word_embed_proj_dim=16, **small, architectures=["OPTForCausalLM"]),
        "mistral": lambda: tf.MistralConfig(**attention, num_key_value_heads=1, **small,
                                            architectures=["MistralForCausalLM"]),
        "gpt_neox": lambda: tf.GPTNeoXConfig(**attention, **small, architectures=["GPTNeoXForCausalLM"]),
        "qwen2": lambda: tf.Qwen2Config(**attention, num_key_value_heads=1, tie_word_embeddings=True, **small,
                                        architectures=["Qwen2ForCausalLM"]),
        "vit": lambda: tf.ViTConfig(**attention, image_size=32, patch_size=8, num_labels=3,
                                    architectures=["ViTForImageClassification"]),
    }
    if kind in more:
        return more[kind]()
    raise ValueError(kind)


HF_KINDS = ("gpt2", "t5", "bert", "llama", "clip", "distilbert", "roberta", "bart", "opt", "mistral", "gpt_neox",
            "qwen2", "vit")


@pytest.fixture
def hf_dir(tmp_path: Any) -> Any:
    """``hf_dir("gpt2")`` writes that tiny config to a folder and returns the folder."""

    def write(kind: str) -> Any:
        folder = tmp_path / kind
        tiny_hf_config(kind).save_pretrained(folder)
        return folder

    return write


@pytest.fixture(autouse=True)
def _model_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # The command line caches model sources in the user's cache directory: never the real one in tests.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources actually opened (cache misses), in order: the model cache's tests count builds."""
    from lrrules import sources

    opened: list[str] = []
    real = sources.open_model

    def counting(spec: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(spec)
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(sources, "open_model", counting)
    return opened
