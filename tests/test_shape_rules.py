"""Issue 13 B: shape-aware formulas (fan_in, fan_out, dimN), `where:` conditions, `overrides:` precedence.

Expected values are computed here by hand from the tensors' shapes, never read back from lrrules.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import lrrules


def _models() -> dict[str, nn.Module]:
    """Several families: MLP, CNN with depthwise and grouped convs, embedding LM, 1-D and 3-D convs."""
    torch.manual_seed(0)
    return {
        "mlp": nn.Sequential(nn.Linear(16, 64), nn.LayerNorm(64), nn.Linear(64, 8)),
        "cnn": nn.Sequential(nn.Conv2d(3, 32, 3), nn.BatchNorm2d(32), nn.Conv2d(32, 32, 3, groups=32),
                             nn.Conv2d(32, 64, 1), nn.Conv2d(64, 64, 5, groups=4)),
        "lm": nn.Sequential(nn.Embedding(100, 24), nn.Linear(24, 96, bias=False), nn.Linear(96, 24),
                            nn.Linear(24, 100)),
        "conv1d3d": nn.Sequential(nn.Conv1d(4, 8, 7), nn.Conv3d(8, 2, (1, 3, 3)), nn.GroupNorm(1, 2)),
    }


def _torch_fans(t: torch.Tensor) -> tuple[int, int]:
    """The peer: torch's own fan computation for 2-D and more; 1-D by the documented convention."""
    if t.ndim >= 2:
        return nn.init._calculate_fan_in_and_fan_out(t)
    return 1, t.shape[0]


def _lrs(plan: lrrules.Plan) -> dict[str, float]:
    return {r.name: r.lr for r in plan.params if r.lr is not None}


@pytest.mark.parametrize("family", list(_models()))
def test_mup_and_muon_formulas_equal_hand_computation(family: str) -> None:
    model = _models()[family]
    rules = lrrules.loads("""
version: 1
vars: {base_width: 8}
defaults: {lr: 0.01}
rules:
  - {name: matrices, match: {ndim: [2, 3, 4, 5]}, lr_mult: "sqrt(max(1, fan_out / fan_in))"}
  - {name: vectors, match: {ndim: 1}, lr_mult: "base_width / fan_out"}
""")
    got = _lrs(lrrules.resolve(rules, model))
    want = {}
    for name, p in model.named_parameters():
        fan_in, fan_out = _torch_fans(p)
        want[name] = 0.01 * (math.sqrt(max(1, fan_out / fan_in)) if p.ndim >= 2 else 8 / fan_out)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-12), name


@pytest.mark.parametrize("family", list(_models()))
def test_dims_are_the_shape(family: str) -> None:
    model = _models()[family]
    rules = lrrules.loads("""
version: 1
defaults: {lr: 1.0}
rules:
  - {name: two, match: {ndim: 2}, lr: "dim0 + 1000 * dim1"}
  - {name: more, match: {ndim: [3, 4, 5]}, lr: "dim0 + 1000 * dim1 + 1e6 * dim2"}
  - {name: one, match: {ndim: 1}, lr: "dim0"}
""")
    got = _lrs(lrrules.resolve(rules, model))
    for name, p in model.named_parameters():
        s = list(p.shape)
        want = s[0] + (1000 * s[1] if p.ndim >= 2 else 0) + (1e6 * s[2] if p.ndim >= 3 else 0)
        assert got[name] == want, name


def test_mup_width_mult_one_line() -> None:
    # muP's hidden-weight rule "lr = base / width_mult", width_mult = fan_in / base_fan_in.
    model = nn.Sequential(nn.Linear(32, 128), nn.Linear(128, 128), nn.Linear(128, 10))
    rules = lrrules.loads("""
version: 1
vars: {base_fan_in: 32}
defaults: {lr: 0.1}
rules:
  - {name: hidden, match: {ndim: 2}, lr: "base_lr / (fan_in / base_fan_in)"}
  - {name: rest, fallback: true}
""")
    got = _lrs(lrrules.resolve(rules, model))
    assert got["0.weight"] == pytest.approx(0.1 / (32 / 32))
    assert got["1.weight"] == pytest.approx(0.1 / (128 / 32))
    assert got["2.weight"] == pytest.approx(0.1 / (128 / 32))
    assert got["0.bias"] == 0.1


def test_missing_dimension_is_a_clear_error() -> None:
    rules = lrrules.loads("""
version: 1
defaults: {lr: 1.0}
rules:
  - {name: all, match: "*", lr_mult: "dim1"}
""")
    with pytest.raises(lrrules.RuleFileError) as info:
        lrrules.resolve(rules, nn.Linear(2, 3))
    message = str(info.value)
    assert "bias" in message and "no dim1" in message and "ndim" in message


# --- overrides: precedence without order -------------------------------------------------------

import random  # noqa: E402

import yaml  # noqa: E402

from lrrules.params import ParamInfo  # noqa: E402
from lrrules.resolver import resolve_params  # noqa: E402

DEPTHS = [2, 2, 6, 2]  # Swin-T in Mask2Former


def _mask2former_custom_keys() -> dict[str, dict[str, float]]:
    """mmdet's configs/mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco-panoptic.py."""
    norm = {"lr_mult": 0.1, "decay_mult": 0.0}
    embed = {"lr_mult": 1.0, "decay_mult": 0.0}
    keys = {"backbone": {"lr_mult": 0.1, "decay_mult": 1.0}, "backbone.patch_embed.norm": norm,
            "backbone.norm": norm, "absolute_pos_embed": norm, "relative_position_bias_table": norm,
            "query_embed": embed, "query_feat": embed, "level_embed": embed}
    keys.update({f"backbone.stages.{s}.blocks.{b}.norm": norm for s, n in enumerate(DEPTHS) for b in range(n)})
    keys.update({f"backbone.stages.{s}.downsample.norm": norm for s in range(len(DEPTHS) - 1)})
    return keys


def _mask2former_names() -> list[tuple[str, tuple[int, ...]]]:
    names = [("backbone.patch_embed.projection.weight", (96, 3, 4, 4)), ("backbone.patch_embed.norm.weight", (96,)),
             ("backbone.absolute_pos_embed", (1, 96, 56, 56))]
    for s, n in enumerate(DEPTHS):
        for b in range(n):
            p = f"backbone.stages.{s}.blocks.{b}"
            names += [(f"{p}.norm1.weight", (96,)), (f"{p}.norm1.bias", (96,)),
                      (f"{p}.attn.w_msa.relative_position_bias_table", (169, 3)),
                      (f"{p}.attn.w_msa.qkv.weight", (288, 96)), (f"{p}.norm2.weight", (96,)),
                      (f"{p}.ffn.layers.0.0.weight", (384, 96))]
        if s < len(DEPTHS) - 1:
            names += [(f"backbone.stages.{s}.downsample.norm.weight", (384,)),
                      (f"backbone.stages.{s}.downsample.reduction.weight", (192, 384))]
        names.append((f"backbone.norm{s}.weight", (96,)))
    names += [("panoptic_head.query_embed.weight", (100, 256)), ("panoptic_head.query_feat.weight", (100, 256)),
              ("panoptic_head.level_embed.weight", (3, 256)), ("panoptic_head.pixel_decoder.conv.weight", (256, 256)),
              ("panoptic_head.cls_embed.bias", (134,))]
    return names


def _mmengine_reference(keys: dict[str, dict[str, float]], name: str, lr: float, wd: float) -> tuple[float, float]:
    """MMEngine's DefaultOptimWrapperConstructor.add_params for custom_keys, written out by hand: keys
    sorted by name, then by length, longest first; the first key that is a substring of the name wins."""
    for key in sorted(sorted(keys), key=len, reverse=True):
        if key in name:
            return lr * keys[key].get("lr_mult", 1.0), wd * keys[key].get("decay_mult", 1.0)
    return lr, wd


def _port(keys: dict[str, dict[str, float]]) -> list[dict]:
    """The port a user writes: one rule per key; a key overrides the keys it is more specific than
    where both can match one name (the shorter key is inside it, or, in MMEngine's order, shorter)."""
    order = sorted(sorted(keys), key=len, reverse=True)
    rules = []
    for key in keys:
        beats = [k for k in order[order.index(key) + 1:]]
        rule = {"name": key, "match": f"*{key}*", "lr_mult": keys[key]["lr_mult"],
                "weight_decay_mult": keys[key]["decay_mult"]}
        if beats:
            rule["overrides"] = beats
        rules.append(rule)
    return rules + [{"name": "rest", "fallback": True}]


@pytest.mark.parametrize("seed", range(4))
def test_mmengine_custom_keys_port_equals_mmengine(seed: int) -> None:
    keys = _mask2former_custom_keys()
    rules = _port(keys)
    random.Random(seed).shuffle(rules)  # file order never matters
    ruleset = lrrules.loads(yaml.safe_dump({"version": 1, "defaults": {"lr": 1e-4, "weight_decay": 0.05},
                                            "rules": rules}))
    params = [ParamInfo(n, s, "Module", True, i) for i, (n, s) in enumerate(_mask2former_names())]
    plan = resolve_params(ruleset, params)
    assert not plan.conflicts and not plan.unmatched
    for row in plan.params:
        want_lr, want_wd = _mmengine_reference(keys, row.name, 1e-4, 0.05)
        assert (row.lr, row.weight_decay) == pytest.approx((want_lr, want_wd)), row.name


def _resolve(rules: list[dict], names: list[str]) -> lrrules.Plan:
    ruleset = lrrules.loads(yaml.safe_dump({"version": 1, "defaults": {"lr": 1.0}, "rules": rules}))
    return resolve_params(ruleset, [ParamInfo(n, (2,), "Linear", True, i) for i, n in enumerate(names)])


def test_overlap_without_precedence_stays_a_conflict() -> None:
    rules = [{"name": "a", "match": "x.*", "lr": 2}, {"name": "b", "match": "*.w", "lr": 3},
             {"name": "c", "match": "x.w", "lr": 4, "overrides": ["a"]}]
    plan = _resolve(rules, ["x.w", "x.v", "y.w"])
    by = {r.name: r for r in plan.params}
    # c beats a, but nothing ranks b against c on x.w: a conflict naming both.
    assert [set(c.rules) for c in plan.conflicts] == [{"b", "c"}]
    assert by["x.v"].lr == 2 and by["y.w"].lr == 3


def test_precedence_is_transitive_and_order_free() -> None:
    rules = [{"name": "a", "match": "*", "lr": 1, "overrides": []}, {"name": "b", "match": "x.*", "lr": 2,
             "overrides": ["a"]}, {"name": "c", "match": "x.w*", "lr": 3, "overrides": ["b"]}]
    for seed in range(6):
        random.Random(seed).shuffle(rules)
        by = {r.name: r.lr for r in _resolve(rules, ["x.w", "x.v", "y"]).params}
        assert by == {"x.w": 3, "x.v": 2, "y": 1}


@pytest.mark.parametrize("overrides, expect", [
    ({"a": ["b"], "b": ["a"]}, "a cycle of overrides: a -> b -> a"),
    ({"a": ["b"], "b": ["c"], "c": ["a"]}, "a cycle of overrides: a -> b -> c -> a"),
    ({"a": ["a"]}, "cannot override itself"),
    ({"a": ["bb"]}, "names no rule (did you mean 'b'?)"),
    ({"a": ["m"]}, "'m' is a modifier"),
    ({"a": ["rest"]}, "is the fallback"),
])
def test_bad_overrides_are_refused_with_a_place(overrides: dict, expect: str) -> None:
    rules = [{"name": n, "match": f"{n}.*", **({"overrides": overrides[n]} if n in overrides else {})}
             for n in ("a", "b", "c")] + [{"name": "rest", "fallback": True}]
    text = yaml.safe_dump({"version": 1, "defaults": {"lr": 1.0}, "rules": rules,
                           "modifiers": [{"name": "m", "match": "*", "lr_mult": 2}]}, sort_keys=False)
    with pytest.raises(lrrules.RuleFileError) as info:
        lrrules.loads(text, path="p.yaml")
    error = info.value.errors[0]
    assert expect in error.message
    assert error.line is not None and str(error).startswith("p.yaml:")


def test_tied_tensor_precedence_across_its_names() -> None:
    ruleset = lrrules.loads("""
version: 1
defaults: {lr: 1.0}
rules:
  - {name: embed, match: "wte.*", lr: 2}
  - {name: head, match: "lm_head.*", lr: 3, overrides: [embed]}
""")
    info = ParamInfo("wte.weight", (10, 4), "Embedding", True, 0, aliases=("lm_head.weight",))
    plan = resolve_params(ruleset, [info])
    assert not plan.conflicts and plan.params[0].rule == "head" and plan.params[0].lr == 3
    assert plan.params[0].matched_as == "lm_head.weight"


def test_the_documented_mask2former_port_equals_mmengine() -> None:
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "language.md").read_text()
    block = doc.split("A port of MMEngine's Mask2Former", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    params = [ParamInfo(n, s, "Module", True, i) for i, (n, s) in enumerate(_mask2former_names())]
    plan = resolve_params(lrrules.loads(block), params)
    assert not plan.conflicts
    keys = _mask2former_custom_keys()
    for row in plan.params:
        want = _mmengine_reference(keys, row.name, 1e-4, 0.05)
        assert (row.lr, row.weight_decay) == pytest.approx(want), row.name


# --- group names -------------------------------------------------------------------------------


def test_every_group_has_a_unique_readable_name_in_its_param_group() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 16), nn.Linear(16, 2))
    rules = lrrules.loads("""
version: 1
defaults: {lr: 0.1, weight_decay: 0.05}
rules:
  - {name: matrices, match: {ndim: 2}, lr_mult: "fan_in / 4"}
  - {name: rest, fallback: true}
modifiers:
  - {name: no-decay, match: {ndim: 1}, weight_decay: 0}
""")
    plan = lrrules.resolve(rules, model)
    names = [g.name for g in plan.groups]
    assert len(set(names)) == len(names) == len(plan.groups)
    # Three matrix lrs (fan_in 4, 8, 16): one rule, three groups, told apart by a suffix.
    assert sorted(n for n in names if n.startswith("matrices")) == ["matrices", "matrices#2", "matrices#3"]
    assert "rest+no-decay" in names
    optimizer = torch.optim.AdamW(plan.param_groups())
    assert [g["name"] for g in optimizer.param_groups] == names
    optimizer.step()  # torch keeps the extra key and steps as usual


# --- vars in defaults --------------------------------------------------------------------------

VARS_FILE = """
version: 1
vars: {lr: 0.001, wd: 0.05}
defaults: {lr: lr, weight_decay: "wd * 2"}
rules:
  - {name: head, match: "2.*", lr_mult: 10}
  - {name: rest, fallback: true}
"""


@pytest.mark.parametrize("lr", [3e-4, 1e-2, 5])
def test_set_lr_sweeps_the_base_lr(lr: float, tmp_path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(VARS_FILE)
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    plan = lrrules.resolve(lrrules.load(path, overrides={"lr": lr}), model)
    got = _lrs(plan)
    assert got["0.weight"] == pytest.approx(lr) and got["2.weight"] == pytest.approx(10 * lr)
    assert plan.groups[0].weight_decay == pytest.approx(0.1)


def test_set_lr_on_the_command_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from lrrules.cli import main

    path = tmp_path / "r.yaml"
    path.write_text(VARS_FILE)
    assert main(["resolve", str(path), "--model", "resnet18", "--set", "lr=3e-4", "--format", "json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert sorted(g["lr"] for g in groups) == pytest.approx([3e-4])  # resnet18 has no '2.*'


@pytest.mark.parametrize("text, expect", [
    ('defaults: {lr: "lrr"}', "unknown name 'lrr' (did you mean 'lr'?)"),
    ('defaults: {lr: "base_lr * 2"}', "a formula in defaults reads only vars"),
    ('defaults: {lr: "lr - 1"}', "greater than 0"),
    ('defaults: {lr: 0.1, weight_decay: "lr ** "}', "syntax error"),
])
def test_bad_default_formulas_are_placed(text: str, expect: str) -> None:
    with pytest.raises(lrrules.RuleFileError) as info:
        lrrules.loads(f"version: 1\nvars: {{lr: 0.1}}\n{text}\nrules: [{{name: a, match: '*'}}]", path="x.yaml")
    error = info.value.errors[0]
    assert expect in error.message and error.line == 3


# --- where: conditions over shapes and module attributes ---------------------------------------

DWCONV = """
version: 1
defaults: {lr: 0.1, weight_decay: 0.05}
rules:
  - {name: all, match: "*"}
modifiers:
  - {name: dwconv, match: {module: Conv2d, where: "groups == in_channels"}, weight_decay_mult: 0.3}
"""


def _dwconv_reference(model: nn.Module) -> set[str]:
    """MMEngine's dwconv_decay_mult test, by hand: the parameters of Conv2d where in_channels == groups
    (its bias too, when no bias_decay_mult is given)."""
    return {f"{name}.{local}" if name else local for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.in_channels == m.groups
            for local, p in m.named_parameters(recurse=False)}


@pytest.mark.slow  # imports timm and builds four models
@pytest.mark.parametrize("arch", ["mobilenetv3_small_050", "convnext_atto", "efficientnet_b0", "resnet18"])
def test_where_picks_depthwise_convs_like_mmengine(arch: str) -> None:
    import timm

    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False)
    plan = lrrules.resolve(lrrules.loads(DWCONV), model)
    picked = {r.name for r in plan.params if r.weight_decay == pytest.approx(0.05 * 0.3)}
    assert picked == _dwconv_reference(model)
    assert bool(picked) == (arch != "resnet18")
    if arch == "convnext_atto" and pytest.importorskip("mmengine"):  # its depthwise convs have biases
        from mmengine.optim import DefaultOptimWrapperConstructor

        constructor = DefaultOptimWrapperConstructor(dict(optimizer=dict(type="AdamW", lr=0.1, weight_decay=0.05)),
                                                     paramwise_cfg=dict(dwconv_decay_mult=0.3))
        with torch.device("cpu"):
            real = timm.create_model(arch, pretrained=False)
        names = {id(p): n for n, p in real.named_parameters()}
        theirs = {names[id(p)] for g in constructor(real).optimizer.param_groups for p in g["params"]
                  if g["weight_decay"] == pytest.approx(0.05 * 0.3)}
        assert theirs == picked


@pytest.mark.parametrize("family", list(_models()))
def test_where_over_shape_variables(family: str) -> None:
    model = _models()[family]
    rules = lrrules.loads("""
version: 1
defaults: {lr: 1.0}
rules:
  - {name: wide, match: {where: "fan_out > fan_in"}, lr: 2}
  - {name: rest, match: {where: "fan_out <= fan_in"}, lr: 3}
""")
    got = _lrs(lrrules.resolve(rules, model))
    for name, p in model.named_parameters():
        fan_in, fan_out = _torch_fans(p)
        assert got[name] == (2 if fan_out > fan_in else 3), name


def test_where_on_a_module_without_the_attribute_says_what_to_do() -> None:
    rules = lrrules.loads("""
version: 1
defaults: {lr: 1.0}
rules:
  - {name: dw, match: {where: "groups == in_channels"}}
  - {name: rest, fallback: true}
""", path="r.yaml")
    with pytest.raises(lrrules.RuleFileError) as info:
        lrrules.resolve(rules, nn.Sequential(nn.Conv2d(2, 2, 1, groups=2), nn.Linear(2, 2)))
    error = info.value.errors[0]
    assert "has no groups" in error.message and "module:" in error.message and error.line == 5


def test_where_on_a_checkpoint_reads_only_shapes() -> None:
    rules = lrrules.loads("""
version: 1
defaults: {lr: 1.0}
rules:
  - {name: dw, match: {where: "groups == in_channels"}}
  - {name: rest, fallback: true}
""")
    with pytest.raises(lrrules.RuleFileError) as info:
        resolve_params(rules, [ParamInfo("a.weight", (2, 1, 3, 3), None, True, 0)])
    assert "checkpoint" in info.value.errors[0].message
    shape_only = lrrules.loads("version: 1\ndefaults: {lr: 1.0}\nrules: [{name: a, match: {where: 'dim1 == 1'}}, "
                               "{name: b, fallback: true}]")
    plan = resolve_params(shape_only, [ParamInfo("a.weight", (2, 1, 3, 3), None, True, 0)])
    assert plan.params[0].rule == "a"


def test_where_is_checked_when_the_file_loads() -> None:
    with pytest.raises(lrrules.RuleFileError) as info:
        lrrules.loads("version: 1\ndefaults: {lr: 1.0}\nrules: [{name: a, match: {where: 'groups ==' }}]")
    assert "syntax error" in info.value.errors[0].message
    with pytest.raises(lrrules.RuleFileError):
        lrrules.loads("version: 1\ndefaults: {lr: 1.0}\nrules: [{name: a, match: {where: '__import__(1)'}}]")


def _module_tree(names: list[tuple[str, tuple[int, ...]]]) -> nn.Module:
    """A model holding exactly these parameter names and shapes."""
    root = nn.Module()
    for name, shape in names:
        *path, leaf = name.split(".")
        node = root
        for part in path:
            if not hasattr(node, part):
                node.add_module(part, nn.Module())
            node = getattr(node, part)
        node.register_parameter(leaf, nn.Parameter(torch.zeros(shape)))
    return root


@pytest.mark.slow  # imports mmengine
def test_mmengine_custom_keys_port_equals_mmengine_itself() -> None:
    pytest.importorskip("mmengine")
    from mmengine.optim import DefaultOptimWrapperConstructor

    model = _module_tree(_mask2former_names())
    keys = _mask2former_custom_keys()
    constructor = DefaultOptimWrapperConstructor(dict(optimizer=dict(type="AdamW", lr=1e-4, weight_decay=0.05)),
                                                 paramwise_cfg=dict(custom_keys=keys))
    names = {id(p): n for n, p in model.named_parameters()}
    want = {names[id(p)]: (g["lr"], g["weight_decay"]) for g in constructor(model).optimizer.param_groups
            for p in g["params"]}
    rules = _port(keys)
    random.Random(0).shuffle(rules)
    ruleset = lrrules.loads(yaml.safe_dump({"version": 1, "defaults": {"lr": 1e-4, "weight_decay": 0.05},
                                            "rules": rules}))
    got = _settings_of(lrrules.resolve(ruleset, model))
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == pytest.approx(want[name]), name


def _settings_of(plan: lrrules.Plan) -> dict[str, tuple[float, float]]:
    return {r.name: (r.lr, r.weight_decay) for r in plan.params}


@pytest.mark.slow  # a short Lightning run
def test_lightning_learning_rate_monitor_logs_each_group_by_its_name(tmp_path) -> None:
    pytest.importorskip("lightning")
    import csv

    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger

    rules = lrrules.loads("""
version: 1
defaults: {lr: 0.1, weight_decay: 0.05}
rules:
  - {name: matrices, match: {ndim: 2}, lr_mult: "fan_in / 4"}
  - {name: rest, fallback: true}
modifiers:
  - {name: no-decay, match: {ndim: 1}, weight_decay: 0}
""")

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 1))

        def training_step(self, batch: torch.Tensor, _: int) -> torch.Tensor:
            return self.net(batch).pow(2).mean()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(lrrules.resolve(rules, self).param_groups())

    data = torch.utils.data.DataLoader(torch.randn(8, 4), batch_size=4)
    trainer = L.Trainer(max_steps=2, logger=CSVLogger(tmp_path), callbacks=[LearningRateMonitor()],
                        log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, accelerator="cpu")
    module = Module()
    trainer.fit(module, data)
    plan = lrrules.resolve(rules, module)
    with open(next(tmp_path.rglob("metrics.csv"))) as f:
        logged = {k: v for row in csv.DictReader(f) for k, v in row.items() if k.startswith("lr-") and v}
    assert {k: float(v) for k, v in logged.items()} == pytest.approx(
        {f"lr-AdamW/{g.name}": g.lr for g in plan.groups})
