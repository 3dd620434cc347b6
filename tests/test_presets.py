"""Issue 13 B: the presets shipped in lrrules/presets, each against its peer or a hand computation."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import lrrules
from lrrules.inherit import presets


def _use(name: str, **vars: float) -> lrrules.RuleSet:
    return lrrules.loads(f"version: 1\nextends: lrrules:{name}\n", overrides=vars or None)


def _settings(plan: lrrules.Plan) -> dict[str, tuple[float, float]]:
    return {r.name: (r.lr, r.weight_decay) for r in plan.params if r.lr is not None}


def _from_groups(groups: list[dict], names: dict[int, str]) -> dict[str, tuple[float, float]]:
    return {names[id(p)]: (g.get("lr", 0.5), g.get("weight_decay", 0.0)) for g in groups for p in g["params"]}


def test_every_preset_loads_alone_and_shows() -> None:
    assert set(presets()) >= {"no-decay", "no-decay-1d", "llrd", "lora-plus", "muon", "mup"}
    for name in presets():
        rules = _use(name)
        assert rules.defaults.lr > 0 and rules.rules
    out = subprocess.run([sys.executable, "-m", "lrrules", "show", "lrrules:llrd", "--set", "layer_decay=0.65"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "layer_decay: 0.65" in out.stdout, out.stderr


def test_an_unknown_preset_names_the_presets() -> None:
    with pytest.raises(lrrules.RuleFileError) as info:
        lrrules.loads("version: 1\nextends: lrrules:no-decy\n", path="r.yaml")
    assert "lrrules:no-decay" in str(info.value) and info.value.errors[0].line == 2



def test_the_library_loads_a_preset_by_its_name_as_the_command_line_does() -> None:
    # lrrules.load("lrrules:mup") (resolve's docstring) was "no such file"; build() takes the name too
    for name in presets():
        assert lrrules.load(f"lrrules:{name}") == _use(name)
    assert lrrules.load("lrrules:llrd", overrides={"layer_decay": 0.5}) == _use("llrd", layer_decay=0.5)
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    optimizer, _ = lrrules.build("lrrules:no-decay-1d", model)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}
    with pytest.raises(lrrules.RuleFileError, match="lrrules:no-decay"):
        lrrules.load("lrrules:no-decy")

@pytest.mark.slow  # imports timm, builds four models
@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny_patch16_224", "convnext_atto", "mobilenetv3_small_050"])
def test_no_decay_1d_equals_timms_bare_call(arch: str) -> None:
    import timm
    from timm.optim import param_groups_weight_decay

    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False)
    names = {id(p): n for n, p in model.named_parameters()}
    want = _from_groups(param_groups_weight_decay(model, weight_decay=0.03), names)
    got = _settings(lrrules.resolve(_use("no-decay-1d", lr=0.5, weight_decay=0.03), model))
    assert got == {n: (0.5, wd) for n, (_, wd) in want.items()}


def test_llrd_is_layer_decay_over_the_blocks() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.Linear(8, 8)
            self.norm = nn.LayerNorm(8)

    class Encoder(nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 8)
            self.blocks = nn.ModuleList(Block() for _ in range(n))
            self.head = nn.Linear(8, 2)

    model = Encoder(4)
    got = _settings(lrrules.resolve(_use("llrd", lr=1e-3, layer_decay=0.5, weight_decay=0.1), model))
    # By hand: embeddings are layer 0, block i layer i + 1, the head layer 5, of 6 layers; the top
    # block trains at lr with the head, each block below at 0.5 times the one above.
    layer = {"embed": 0, "head": 5, **{f"blocks.{i}": i + 1 for i in range(4)}}
    for name, p in model.named_parameters():
        prefix = name.rsplit(".", 2)[0] if name.startswith("blocks") else name.split(".")[0]
        wd = 0.0 if p.ndim <= 1 or name.endswith(".bias") else 0.1
        assert got[name] == pytest.approx((1e-3 * 0.5 ** max(0, 4 - layer[prefix]), wd)), name


def test_mup_hidden_matrices_at_base_over_width_mult() -> None:
    # Against mup itself: tests/test_mup.py. Here by hand: only the hidden matrix has two width dims.
    from lrrules.resolver import resolve

    def mlp(width: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))

    model = mlp(512)
    got = _settings(resolve(_use("mup", lr=0.01), model, base=mlp(128)))
    for name, p in model.named_parameters():
        want = 0.01 / (512 / 128) if name == "2.weight" else 0.01
        assert got[name][0] == pytest.approx(want), name


def test_muon_split_sends_only_hidden_matrices_to_muon() -> None:
    class LM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(50, 16)
            self.up = nn.Linear(16, 64)
            self.down = nn.Linear(64, 16)
            self.norm = nn.LayerNorm(16)
            self.lm_head = nn.Linear(16, 50, bias=False)

    model = LM()
    plan = lrrules.resolve(_use("muon", lr=0.02, adamw_lr=3e-4), model)
    rows = {r.name: r for r in plan.params}
    for name, p in model.named_parameters():
        to_muon = p.ndim == 2 and not name.startswith(("embed", "lm_head"))
        assert rows[name].rule == ("muon" if to_muon else "adamw"), name
        want = 0.02 if to_muon else 3e-4  # torch.optim.Muon applies its shape factor itself
        assert rows[name].lr == pytest.approx(want), name
    muon_params = [p for g in plan.param_groups(optimizer="muon") for p in g["params"]]
    expected = [p for n, p in model.named_parameters() if p.ndim == 2 and not n.startswith(("embed", "lm_head"))]
    assert {id(p) for p in muon_params} == {id(p) for p in expected}  # all torch.optim.Muon accepts
    optimizer, _ = lrrules.build(_use("muon", lr=0.02, adamw_lr=3e-4), model)  # one optimizer, both inside
    assert {type(o).__name__ for o in optimizer.optimizers.values()} == {"Muon", "AdamW"}


def test_lora_plus_equals_peft() -> None:
    peft = pytest.importorskip("peft")
    from peft.optimizers import create_loraplus_optimizer

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(20, 8)
            self.q = nn.Linear(8, 8)
            self.v = nn.Linear(8, 8)
            self.norm = nn.LayerNorm(8)
            self.out = nn.Linear(8, 4)

    torch.manual_seed(0)
    for bias in ("none", "lora_only", "all"):
        config = peft.LoraConfig(r=2, target_modules=["q", "v", "emb"], modules_to_save=["norm"], bias=bias)
        model = peft.get_peft_model(Tiny(), config)
        names = {id(p): n for n, p in model.named_parameters()}
        optimizer = create_loraplus_optimizer(model, torch.optim.AdamW, lr=2e-4, loraplus_lr_ratio=8,
                                              loraplus_lr_embedding=1e-5, loraplus_weight_decay=0.01)
        want = _from_groups(optimizer.param_groups, names)
        rules = _use("lora-plus", lr=2e-4, ratio=8, embedding_lr=1e-5, weight_decay=0.01)
        plan = lrrules.resolve(rules, model)
        got = _settings(plan)
        assert got.keys() == want.keys(), bias
        for name in want:
            assert got[name] == pytest.approx(want[name]), (bias, name)
