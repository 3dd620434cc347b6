"""Issue 20: each preset equal, per tensor, to its reference's own code run here, on the families
named there (timm CNN and ViT, BERT, RoBERTa, GPT-2's Conv1D, Llama untied and tied, a
classification head, T5 and BART). Small configs; nothing is downloaded."""

from __future__ import annotations

import copy
import fnmatch

import pytest
import torch
from torch import nn

import lrrules

transformers = pytest.importorskip("transformers")


def _use(name: str, **vars: float) -> lrrules.RuleSet:
    return lrrules.loads(f"version: 1\nextends: lrrules:{name}\n", overrides=vars or None)


def _hf(kind: str, task: str, **kw: object) -> nn.Module:
    config = transformers.AutoConfig.for_model(kind, **kw)
    return getattr(transformers, task)(config)


_BERT = dict(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32, vocab_size=50,
             max_position_embeddings=32)
_LLAMA = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
              vocab_size=50)
#: family -> (build, embedding modules, head modules), the last two named by hand from each model's
#: code: the reference split of Muon's README (embeddings and heads to AdamW) needs them spelled out.
FAMILIES = {
    "bert-mlm": (lambda: _hf("bert", "BertForMaskedLM", **_BERT), ["bert.embeddings.*_embeddings"], ["cls"]),
    "bert-cls": (lambda: _hf("bert", "BertForSequenceClassification", **_BERT),
                 ["bert.embeddings.*_embeddings"], ["classifier"]),
    "roberta-cls": (lambda: _hf("roberta", "RobertaForSequenceClassification", **_BERT),
                    ["roberta.embeddings.*_embeddings"], ["classifier"]),
    "gpt2": (lambda: _hf("gpt2", "GPT2LMHeadModel", n_embd=16, n_layer=2, n_head=2, vocab_size=50, n_positions=32),
             ["transformer.wte", "transformer.wpe"], ["lm_head"]),
    "llama": (lambda: _hf("llama", "LlamaForCausalLM", **_LLAMA, tie_word_embeddings=False),
              ["model.embed_tokens"], ["lm_head"]),
    "llama-tied": (lambda: _hf("llama", "LlamaForCausalLM", **_LLAMA, tie_word_embeddings=True),
                   ["model.embed_tokens"], ["lm_head"]),
    "t5": (lambda: _hf("t5", "T5ForConditionalGeneration", d_model=16, d_ff=32, num_layers=2, num_decoder_layers=2,
                       num_heads=2, d_kv=8, vocab_size=50),
           # relative_attention_bias is an nn.Embedding table of position buckets: an embedding, not a hidden matrix
           ["shared", "*.embed_tokens", "*.relative_attention_bias"], ["lm_head"]),
    "bart": (lambda: _hf("bart", "BartForConditionalGeneration", d_model=16, encoder_layers=2, decoder_layers=2,
                         encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                         vocab_size=50, max_position_embeddings=32),
             ["model.shared", "*.embed_tokens", "*.embed_positions"], ["lm_head"]),
}
TIMM = {"resnet18": (["conv1"], ["fc"]), "vit_tiny_patch16_224": (["patch_embed", "pos_embed", "cls_token"], ["head"])}


def _model(family: str) -> tuple[nn.Module, list[str], list[str]]:
    torch.manual_seed(0)
    if family in TIMM:
        timm = pytest.importorskip("timm")
        with torch.device("meta"):
            return timm.create_model(family, pretrained=False), *TIMM[family]
    build, embeds, heads = FAMILIES[family]
    return build(), embeds, heads


def _names(model: nn.Module) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        out.setdefault(id(p), []).append(name)
    return out


def _under(names: list[str], prefixes: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(n, p) or fnmatch.fnmatchcase(n, p + ".*") for n in names for p in prefixes)


def _rows(plan: lrrules.Plan) -> dict[str, tuple[str, float, float]]:
    return {r.name: (plan.groups[r.group].optimizer, r.lr, r.weight_decay) for r in plan.params
            if r.lr is not None}  # a frozen tensor has no settings


ALL = [*FAMILIES, *TIMM]


# --- Muon -------------------------------------------------------------------------------------


def _muon_reference(model: nn.Module, embeds: list[str], heads: list[str]) -> tuple[list, list]:
    """Muon's README split: the >=2-D parameters of the body to Muon, embeddings, heads, gains and
    biases to AdamW; torch.optim.Muon takes 2-D only, so 4-D convolutions go to AdamW as well."""
    names = _names(model)
    hidden, rest = [], []
    for p in model.parameters():
        exterior = _under(names[id(p)], embeds + heads)
        (hidden if p.ndim == 2 and not exterior else rest).append(p)
    return hidden, rest


@pytest.mark.parametrize("family", ALL)
def test_muon_routes_like_muons_reference_split(family: str) -> None:
    model, embeds, heads = _model(family)
    hidden, rest = _muon_reference(model, embeds, heads)
    assert hidden or family == "resnet18"
    got = _rows(lrrules.resolve(_use("muon", lr=0.02, adamw_lr=3e-4, weight_decay=0.01), model))
    names = _names(model)
    for p in hidden:
        assert got[names[id(p)][0]] == ("muon", 0.02, 0.01), names[id(p)]
    for p in rest:
        assert got[names[id(p)][0]] == ("default", 3e-4, 0.01), names[id(p)]


def test_gpt2_conv1d_and_bert_output_dense_go_to_muon_resnet_fc_to_adamw() -> None:
    gpt2 = _rows(lrrules.resolve(_use("muon"), _model("gpt2")[0]))
    assert gpt2["transformer.h.0.attn.c_attn.weight"][0] == "muon"
    bert = _rows(lrrules.resolve(_use("muon"), _model("bert-cls")[0]))
    assert bert["bert.encoder.layer.0.attention.output.dense.weight"][0] == "muon"
    assert bert["bert.encoder.layer.0.output.dense.weight"][0] == "muon"
    assert bert["classifier.weight"][0] == "default"
    resnet = _rows(lrrules.resolve(_use("muon"), _model("resnet18")[0]))
    assert resnet["fc.weight"][0] == resnet["fc.bias"][0] == "default"


@pytest.mark.parametrize("family", ["gpt2", "llama", "llama-tied", "bert-cls", "t5"])
def test_one_muon_step_equals_torch_muon_and_adamw_built_by_hand(family: str) -> None:
    model, embeds, heads = _model(family)
    model = model.double()
    twin = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(1)
    for p, q in zip(model.parameters(), twin.parameters()):
        p.grad = torch.randn(p.shape, generator=generator, dtype=p.dtype)
        q.grad = p.grad.clone()
    rules = _use("muon", lr=0.02, adamw_lr=3e-4, weight_decay=0.01)
    optimizer, _ = lrrules.build(rules, model)
    optimizer.step()
    hidden, rest = _muon_reference(twin, embeds, heads)
    torch.optim.Muon(hidden, lr=0.02, weight_decay=0.01).step()
    torch.optim.AdamW(rest, lr=3e-4, weight_decay=0.01).step()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-12), name


def test_muons_shape_factor_is_applied_once_as_in_kellers_muon() -> None:
    muon = pytest.importorskip("muon")
    torch.manual_seed(0)
    layer = nn.Linear(64, 256, bias=False)
    reference = copy.deepcopy(layer)
    layer.weight.grad = torch.randn(256, 64)
    reference.weight.grad = layer.weight.grad.clone()
    before = layer.weight.detach().clone()
    optimizer, plan = lrrules.build(_use("muon", lr=0.02), layer)
    assert plan.param_groups(optimizer="muon")[0]["lr"] == 0.02
    optimizer.step()
    muon.SingleDeviceMuon([reference.weight], lr=0.02).step()
    ours = (layer.weight.detach() - before).norm()
    keller = (reference.weight.detach() - before).norm()
    assert abs(ours / keller - 1) < 0.02, (float(ours), float(keller))  # both bf16 Newton-Schulz; twice would be 2x


# --- no-decay ---------------------------------------------------------------------------------

TIMM_FAMILIES = ["resnet18", "convnext_atto", "mobilenetv3_small_050", "efficientnet_b0", "regnety_002",
                 "vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224", "deit3_small_patch16_224",
                 "swin_tiny_patch4_window7_224", "swinv2_tiny_window8_256", "beit_base_patch16_224",
                 "cait_xxs24_224", "xcit_nano_12_p16_224", "levit_128s", "twins_svt_small", "convit_tiny",
                 "crossvit_tiny_240", "mvitv2_tiny", "maxvit_tiny_tf_224", "coat_tiny", "tnt_s_patch16_224",
                 "eva02_tiny_patch14_224", "volo_d1_224", "nest_tiny", "gcvit_xxtiny", "hiera_tiny_224",
                 "tiny_vit_5m_224", "pit_ti_224", "efficientformer_l1", "flexivit_small"]


def _timm_decays(model: nn.Module) -> dict[str, float]:
    from timm.optim import create_optimizer_v2

    names = {id(p): n for n, p in model.named_parameters()}
    optimizer = create_optimizer_v2(model, opt="adamw", lr=0.5, weight_decay=0.03)
    return {names[id(p)]: g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}


@pytest.mark.slow  # thirty timm models on the meta device, about 10 s
@pytest.mark.parametrize("arch", TIMM_FAMILIES)
def test_no_decay_equals_timms_create_optimizer_v2(arch: str) -> None:
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False)
    want = _timm_decays(model)
    got = {n: wd for n, (_, _, wd) in _rows(lrrules.resolve(_use("no-decay", lr=0.5, weight_decay=0.03), model)).items()}
    assert got == want


@pytest.mark.parametrize("family", [*FAMILIES, "vit_tiny_patch16_224"])
def test_no_decay_equals_create_optimizer_v2_on_each_family(family: str) -> None:
    pytest.importorskip("timm")
    model = _model(family)[0]
    want = _timm_decays(model)
    got = _rows(lrrules.resolve(_use("no-decay", lr=0.5, weight_decay=0.03), model))
    assert {n: wd for n, (_, _, wd) in got.items()} == want
    assert all(lr == 0.5 for _, lr, _ in got.values())


# --- llrd -------------------------------------------------------------------------------------

#: family -> (embedding modules, the block stacks), by hand from each model's code.
LLRD = {
    "bert-mlm": (["bert.embeddings"], ["bert.encoder.layer"]),
    "bert-cls": (["bert.embeddings"], ["bert.encoder.layer"]),
    "roberta-cls": (["roberta.embeddings"], ["roberta.encoder.layer"]),
    "gpt2": (["transformer.wte", "transformer.wpe"], ["transformer.h"]),
    "llama": (["model.embed_tokens"], ["model.layers"]),
    "llama-tied": (["model.embed_tokens"], ["model.layers"]),
    "t5": (["shared"], ["encoder.block", "decoder.block"]),
    "vit_tiny_patch16_224": (["patch_embed", "pos_embed", "cls_token"], ["blocks"]),
}


def _llrd_reference(model: nn.Module, embeds: list[str], stacks: list[str], lr: float, decay: float,
                    weight_decay: float) -> dict[str, tuple[float, float]]:
    """The usual hand-written loop (Sun et al. 2019; the Kaggle/HF LLRD recipe): going down from the
    top block, lr starts at the base lr and is multiplied by the decay after each layer, the
    embeddings last; the head (everything else) at the base lr. Weight decay as the Hugging Face
    Trainer decides it (get_decay_parameter_names, run here)."""
    decays = set(transformers.Trainer.get_decay_parameter_names(None, model))
    blocks = [f"{s}.{i}" for s in stacks for i in range(len(model.get_submodule(s)))]
    depth_of = {}
    count = max(len(model.get_submodule(s)) for s in stacks)
    for s in stacks:  # encoder and decoder decay side by side
        for i in range(len(model.get_submodule(s))):
            depth_of[f"{s}.{i}"] = count - 1 - i
    out = {}
    for names in _names(model).values():
        name = names[0]
        block = next((b for b in blocks if _under(names, [b])), None)
        if block is not None:
            rate = lr * decay ** depth_of[block]
        elif _under(names, embeds):
            rate = lr * decay ** count
        else:
            rate = lr
        out[name] = (rate, weight_decay if any(n in decays for n in names) else 0.0)
    return out


@pytest.mark.parametrize("family", list(LLRD))
def test_llrd_equals_the_hand_written_bert_loop(family: str) -> None:
    model = _model(family)[0]
    want = _llrd_reference(model, *LLRD[family], lr=1e-3, decay=0.8, weight_decay=0.01)
    got = _rows(lrrules.resolve(_use("llrd", lr=1e-3, layer_decay=0.8, weight_decay=0.01), model))
    assert got.keys() == want.keys()
    for name, (lr, wd) in want.items():
        assert got[name][1] == pytest.approx(lr, rel=1e-12, abs=0) and got[name][2] == wd, (name, got[name], (lr, wd))


# --- lora-plus --------------------------------------------------------------------------------


@pytest.mark.parametrize("family,targets", [
    ("bert-cls", ["query", "value", "word_embeddings"]), ("roberta-cls", ["query", "value"]),
    ("gpt2", ["c_attn", "wte"]), ("llama", ["q_proj", "v_proj", "embed_tokens"]), ("llama-tied", ["q_proj", "v_proj"]),
    ("t5", ["q", "v"]), ("bart", ["q_proj", "v_proj"]),
])
def test_lora_plus_equals_peft(family: str, targets: list[str]) -> None:
    peft = pytest.importorskip("peft")
    from peft.optimizers import create_loraplus_optimizer

    model = _model(family)[0]
    save = ["classifier"] if family.endswith("-cls") else []
    config = peft.LoraConfig(r=2, target_modules=targets, modules_to_save=save, bias="all",
                             fan_in_fan_out=family == "gpt2")
    model = peft.get_peft_model(model, config)
    names = {id(p): n for n, p in model.named_parameters()}
    optimizer = create_loraplus_optimizer(model, torch.optim.AdamW, lr=2e-4, loraplus_lr_ratio=8,
                                          loraplus_lr_embedding=1e-5, loraplus_weight_decay=0.01)
    want = {names[id(p)]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    got = {n: (lr, wd) for n, (_, lr, wd) in
           _rows(lrrules.resolve(_use("lora-plus", lr=2e-4, ratio=8, embedding_lr=1e-5, weight_decay=0.01), model)).items()}
    assert got.keys() == want.keys()
    for name, (lr, wd) in want.items():
        assert got[name] == pytest.approx((lr, wd), rel=1e-12), name
