"""Roles (lrrules/roles.py): what a tensor does, decided from the model's structure, with the evidence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lrrules
from lrrules.cli import main
from lrrules.params import collect
from tests.conftest import TiedLM, TinyNet


def _roles(model: nn.Module) -> dict[str, set[str]]:
    return {p.name: {r for r, _ in p.roles} for p in collect(model)[0]}


def _rules(match: str, extra: str = "") -> lrrules.RuleSet:
    return lrrules.loads(f"version: 1\ndefaults: {{lr: 1.0}}\n{extra}rules:\n"
                         f"  - {{name: picked, match: {match}, lr: 2.0}}\n  - {{name: rest, fallback: true}}\n")


def _picked(rules: lrrules.RuleSet, model: nn.Module) -> set[str]:
    return {r.name for r in lrrules.resolve(rules, model).params if r.rule == "picked"}


def test_a_plain_cnn_has_its_head_norms_biases_and_hidden_convolutions() -> None:
    roles = _roles(TinyNet())
    assert roles["fc.weight"] == {"head"} and roles["fc.bias"] == {"head", "bias"}
    assert roles["bn1.weight"] == {"norm"} and roles["layer1.0.bias"] == {"bias"}
    assert roles["conv1.weight"] == roles["layer2.0.weight"] == {"hidden"}


def test_a_tied_embedding_and_head_has_both_roles() -> None:
    roles = _roles(TiedLM())
    assert roles["embed.weight"] == {"embedding", "head"}
    assert roles["norm.weight"] == {"norm"}


def test_a_head_under_weight_norm_or_a_parametrization_is_still_the_head() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    torch.nn.utils.parametrizations.weight_norm(model[2])
    roles = _roles(model)
    assert roles["2.parametrizations.weight.original0"] >= {"head"}
    assert roles["2.parametrizations.weight.original1"] >= {"head"}
    assert roles["0.weight"] == {"hidden"}


def test_hf_heads_and_embeddings_come_from_the_model_not_the_names() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model("bert", hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                               intermediate_size=32, vocab_size=50, max_position_embeddings=32)
    roles = _roles(transformers.BertForSequenceClassification(config))
    assert roles["classifier.weight"] == {"head"}
    assert roles["bert.embeddings.word_embeddings.weight"] == {"embedding"}
    assert roles["bert.embeddings.position_embeddings.weight"] == {"embedding", "position"}
    assert roles["bert.encoder.layer.0.attention.output.dense.weight"] == {"hidden"}
    assert roles["bert.encoder.layer.0.attention.output.LayerNorm.weight"] == {"norm"}


def test_peft_modules_to_save_copy_of_the_head_is_the_head_and_the_example_sends_it_to_adamw() -> None:
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.from_pretrained("examples/integrations/tiny-llama")
    model = peft.get_peft_model(transformers.AutoModelForCausalLM.from_config(config),
                                peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"]))
    name = "base_model.model.lm_head.modules_to_save.default.weight"
    assert "head" in _roles(model)[name]
    plan = lrrules.resolve(lrrules.load("examples/muon-adamw.yaml"), model)
    rows = {r.name: r for r in plan.params if r.lr is not None}
    assert plan.groups[rows[name].group].optimizer == "default"  # AdamW
    lora = [n for n in rows if "lora_" in n]
    assert lora and all(plan.groups[rows[n].group].optimizer == "muon" for n in lora)
    assert not plan.warnings()


def test_timm_position_tables_and_tokens_come_from_no_weight_decay() -> None:
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        roles = _roles(timm.create_model("vit_tiny_patch16_224", pretrained=False))
    assert roles["pos_embed"] == roles["cls_token"] == {"position", "no_weight_decay"}
    assert roles["head.weight"] == {"head"} and roles["patch_embed.proj.weight"] == {"embedding"}
    assert roles["blocks.0.attn.qkv.weight"] == {"hidden"}


def test_role_matchers_select_and_any_of_a_list() -> None:
    assert _picked(_rules("{role: head}"), TinyNet()) == {"fc.weight", "fc.bias"}
    assert _picked(_rules("{role: output}"), TinyNet()) == {"fc.weight", "fc.bias"}
    assert _picked(_rules("{role: [norm, bias], ndim: 1}"), TinyNet()) == {
        "bn1.weight", "bn1.bias", "layer1.0.bias", "layer1.1.weight", "layer1.1.bias", "layer2.0.bias",
        "layer2.1.weight", "layer2.1.bias", "fc.bias"}


def test_an_unknown_role_is_a_file_error_with_a_suggestion() -> None:
    with pytest.raises(lrrules.RuleFileError) as info:
        lrrules.loads("version: 1\ndefaults: {lr: 1.0}\nrules:\n  - {name: a, match: {role: haed}}\n", path="r.yaml")
    error = info.value.errors[0]
    assert "unknown role 'haed'" in str(info.value) and "did you mean 'head'" in str(info.value)
    assert error.line == 4


def test_on_a_checkpoint_only_bias_is_decided_and_other_roles_are_refused(tmp_path, capsys) -> None:
    checkpoint = tmp_path / "model.pt"
    torch.save(TinyNet().state_dict(), checkpoint)
    bias = tmp_path / "bias.yaml"
    bias.write_text("version: 1\ndefaults: {lr: 1.0}\nrules:\n  - {name: b, match: {role: bias}, lr: 2.0}\n"
                    "  - {name: rest, fallback: true}\n")
    assert main(["check", str(bias), "--model", str(checkpoint)]) == 0
    head = tmp_path / "head.yaml"
    head.write_text("version: 1\ndefaults: {lr: 1.0}\nrules:\n  - {name: h, match: {role: head}, lr: 2.0}\n"
                    "  - {name: rest, fallback: true}\n")
    capsys.readouterr()
    assert main(["check", str(head), "--model", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "'role: head' needs the model's modules" in err and "Traceback" not in err


def test_explain_shows_each_role_and_its_evidence(capsys) -> None:
    assert main(["explain", "lrrules:muon", "--model", "resnet18", "--no-cache", "fc.weight"]) == 0
    out = capsys.readouterr().out
    assert "roles: head (timm's pretrained_cfg['classifier'] names 'fc')" in out
    assert "rule: adamw" in out


def test_a_head_or_embedding_routed_to_muon_fails_check_strict(tmp_path, capsys) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\ndefaults: {lr: 3.0e-4}\noptimizers:\n  muon: {type: Muon}\nrules:\n"
                     "  - {name: m, match: {ndim: 2}, optimizer: muon}\n  - {name: rest, fallback: true}\n")
    model = "hf:examples/integrations/tiny-llama"
    assert main(["check", str(rules), "--model", model, "--no-cache"]) == 0
    assert main(["check", str(rules), "--model", model, "--no-cache", "--strict"]) == 1
    out = capsys.readouterr().out
    assert "'lm_head.weight' is the head" in out and "'model.embed_tokens.weight' is the embedding" in out
    assert main(["check", "lrrules:muon", "--model", model, "--no-cache", "--strict"]) == 0


def test_a_model_whose_hooks_fail_still_has_roles() -> None:
    class Odd(TinyNet):
        def no_weight_decay(self) -> set[str]:
            raise RuntimeError("broken hook")

    roles = _roles(Odd())
    assert roles["fc.weight"] == {"head"} and all("no_weight_decay" not in r for r in roles.values())


def test_explain_json_carries_each_tensors_roles_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    import json as _json

    from lrrules.cli import main as _main

    rows = {}
    for name in ("fc.weight", "layer1.0.bn1.weight"):
        assert _main(["explain", "lrrules:muon", "--model", "resnet18", "--format", "json", "--no-cache", name]) == 0
        rows.update({r["name"]: r for r in _json.loads(capsys.readouterr().out)})
    assert set(rows["fc.weight"]["roles"]) == {"head"} and rows["fc.weight"]["roles"]["head"]
    assert set(rows["layer1.0.bn1.weight"]["roles"]) == {"norm"}
