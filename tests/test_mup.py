"""Issue 20: ``lrrules:mup`` against mup's own ``MuAdam``/``MuAdamW``, run in the test after
``mup.set_base_shapes(model, base)``, per tensor, on a model at the base width and at the target width."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import lrrules
from lrrules.cli import main
from lrrules.errors import LrrulesError, ModelError, RuleFileError
from lrrules.resolver import resolve
from lrrules.variables import base_shapes

mup = pytest.importorskip("mup")

LR, WD = 0.01, 0.1


def _preset(**vars: float) -> lrrules.RuleSet:
    return lrrules.loads("version: 1\nextends: lrrules:mup\n", overrides={"lr": LR, "weight_decay": WD, **vars})


def _reference(model: nn.Module, base: nn.Module, adam: Callable[..., torch.optim.Optimizer]
               ) -> dict[str, tuple[float, float]]:
    """Each parameter's (lr, weight decay) in the groups mup's optimizer makes."""
    # Only the optimizer's groups are compared: the init rescaling and the MuReadout check are not.
    mup.set_base_shapes(model, base, rescale_params=False, do_assert=False)
    optimizer = adam(model.parameters(), lr=LR, weight_decay=WD)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}


def _ours(plan: lrrules.Plan) -> dict[str, tuple[float, float]]:
    return {r.name: (r.lr, r.weight_decay) for r in plan.params if r.lr is not None}


def _assert_equal(got: dict[str, tuple[float, float]], want: dict[str, tuple[float, float]]) -> None:
    assert got.keys() == want.keys()
    for name, (lr, wd) in want.items():
        assert got[name][0] == pytest.approx(lr, rel=1e-12, abs=0), name
        assert got[name][1] == pytest.approx(wd, rel=1e-12, abs=0), name


class MLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.input = nn.Linear(12, width)
        self.hidden = nn.Linear(width, width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)
        self.readout = mup.MuReadout(width, 10)


def _timm_resnet(width: int) -> nn.Module:
    from timm.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10, stem_type="deep", stem_width=width // 2,
                  channels=(width, 2 * width, 4 * width, 8 * width))


def _timm_vit(width: int) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=32, patch_size=8, embed_dim=width, depth=2, num_heads=2, num_classes=10)


def _bert(width: int) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    return BertForSequenceClassification(BertConfig(
        vocab_size=99, hidden_size=width, num_hidden_layers=2, num_attention_heads=2, intermediate_size=4 * width,
        max_position_embeddings=32, num_labels=3))


def _gpt2(width: int) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=width, n_layer=2, n_head=2, n_positions=32))


def _llama(tied: bool) -> Callable[[int], nn.Module]:
    def make(width: int) -> nn.Module:
        from transformers import LlamaConfig, LlamaForCausalLM

        return LlamaForCausalLM(LlamaConfig(
            vocab_size=99, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32, tie_word_embeddings=tied))
    return make


FAMILIES: dict[str, Callable[[int], nn.Module]] = {
    "mlp": MLP, "timm-resnet": _timm_resnet, "timm-vit": _timm_vit, "bert": _bert, "gpt2": _gpt2,
    "llama-untied": _llama(False), "llama-tied": _llama(True),
}


def _pair(family: str, base: int = 16, target: int = 64) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    with torch.device("meta"):  # names and shapes are all muP reads
        return FAMILIES[family](base), FAMILIES[family](target)


@pytest.mark.parametrize("adam", ["MuAdam", "MuAdamW"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_mup_preset_equals_mup_per_tensor(family: str, adam: str) -> None:
    base, model = _pair(family)
    got = _ours(resolve(_preset(), model, base=base))
    _assert_equal(got, _reference(model, base, getattr(mup, adam)))


def test_input_readout_and_down_projection_get_what_muadam_gives() -> None:
    # The cases, with the values written out: input and readout at lr, hidden and the
    # 4w->w down projection at lr / 4 with weight decay x 4 (width 16 -> 64).
    base, model = _pair("mlp")
    got = _ours(resolve(_preset(), model, base=base))
    for name in ("input.weight", "readout.weight", "hidden.bias", "down.bias", "readout.bias"):
        assert got[name] == (LR, WD), name
    for name in ("hidden.weight", "up.weight", "down.weight"):
        assert got[name] == pytest.approx((LR / 4, WD * 4), rel=1e-12), name
    _assert_equal(got, _reference(model, base, mup.MuAdamW))


def test_hidden_convolutions_are_scaled() -> None:
    base, model = _pair("timm-resnet")
    got = _ours(resolve(_preset(), model, base=base))
    assert got["layer2.0.conv2.weight"] == pytest.approx((LR / 4, WD * 4), rel=1e-12)
    assert got["conv1.0.weight"] == (LR, WD)  # the stem: 3 input channels at every width
    assert got["fc.weight"] == (LR, WD)     # the readout: 10 classes at every width


def test_build_with_a_base_model_gives_muadamw_groups() -> None:
    torch.manual_seed(0)
    base, model = MLP(8), MLP(32)
    optimizer, plan = lrrules.build(_preset(), model, base=base)
    names = {id(p): n for n, p in model.named_parameters()}
    got = {names[id(p)]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    _assert_equal(got, _reference(model, base, mup.MuAdamW))


def test_a_user_rule_on_top_is_scaled_as_muadam_scales_the_callers_groups() -> None:
    base, model = _pair("mlp")
    rules = lrrules.loads("version: 1\nextends: lrrules:mup\nvars: {lr: 0.01, weight_decay: 0.1}\n"
                          "rules:\n  - {name: fast, match: 'up.*', lr_mult: 3}\n")
    got = _ours(resolve(rules, model, base=base))
    mup.set_base_shapes(model, base, rescale_params=False, do_assert=False)
    up = [p for n, p in model.named_parameters() if n.startswith("up.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("up.")]
    optimizer = mup.MuAdamW([{"params": up, "lr": 3 * LR}, {"params": rest}], lr=LR, weight_decay=WD)
    names = {id(p): n for n, p in model.named_parameters()}
    want = {names[id(p)]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    _assert_equal(got, want)


def test_base_shapes_as_mups_mapping_with_none_for_finite_dims() -> None:
    # mup's base-shape files (save_base_shapes) write null for a dimension that is no width.
    _, model = _pair("mlp")
    base = {n: [None if d in (12, 10) else d // 4 for d in p.shape] for n, p in model.named_parameters()}
    got = _ours(resolve(_preset(), model, base=base))
    assert got["hidden.weight"] == pytest.approx((LR / 4, WD * 4), rel=1e-12)
    assert got["input.weight"] == (LR, WD)


def test_cli_base_model_on_checkpoints_equals_mup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A checkpoint holds names and shapes, all muP reads: the groups equal MuAdamW's on the modules.
    import json

    from safetensors.torch import save_file

    torch.manual_seed(0)
    base, model = MLP(8), MLP(32)
    save_file(base.state_dict(), str(tmp_path / "base.safetensors"))
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    code = main(["resolve", "lrrules:mup", "--model", str(tmp_path / "model.safetensors"), "--base-model",
                 str(tmp_path / "base.safetensors"), "--set", f"lr={LR}", "--set", f"weight_decay={WD}",
                 "--format", "json", "--no-cache"])
    assert code == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    got = {n: (g["lr"], g["weight_decay"]) for g in groups for n in g["params"]}
    _assert_equal(got, _reference(model, base, mup.MuAdamW))


def test_without_base_shapes_the_formula_says_how_to_give_them() -> None:
    _, model = _pair("mlp")
    with pytest.raises(RuleFileError) as info:
        resolve(_preset(), model)
    error = info.value.errors[0]
    assert "base shapes" in error.message and "--base-model" in error.message
    assert error.path.endswith("mup.yaml") and error.line > 0


def test_a_base_of_another_architecture_is_refused() -> None:
    _, model = _pair("mlp")
    with pytest.raises(ModelError, match="tensors the model lacks"):
        resolve(_preset(), model, base=nn.Linear(3, 4))
    with pytest.raises(RuleFileError, match="not in the base model"):
        resolve(_preset(), model, base={"input.weight": (4, 12)})


def test_more_than_two_width_dimensions_are_refused_as_mup_refuses_them() -> None:
    model = nn.ParameterDict({"cube": nn.Parameter(torch.zeros(8, 8, 8))})
    with pytest.raises(NotImplementedError):  # the reference refuses it
        _reference(model, nn.ParameterDict({"cube": nn.Parameter(torch.zeros(2, 2, 2))}), mup.MuAdam)
    with pytest.raises(RuleFileError, match="3 width dimensions"):
        resolve(_preset(), model, base={"cube": (2, 2, 2)})


@pytest.mark.parametrize("bad", [{"w": [2, -1]}, {"w": [2, 1.5]}, {"w": [True, 2]}])
def test_a_malformed_base_shape_is_an_lrrules_error(bad: dict) -> None:
    with pytest.raises(LrrulesError, match="whole numbers"):
        base_shapes(bad)


def test_width_mult_is_the_last_width_dimensions_ratio_by_hand() -> None:
    # Independent of mup: GPT-2's Conv1D stores (in, out), so the last width dim is its fan-out.
    rules = lrrules.loads("version: 1\ndefaults: {lr: 1.0}\nrules:\n"
                          "  - {name: all, match: '*', lr: 'width_mult * 1000 + ninf'}\n")
    model = nn.ParameterDict({"a": nn.Parameter(torch.zeros(48, 16)), "b": nn.Parameter(torch.zeros(7, 16)),
                              "c": nn.Parameter(torch.zeros(7))})
    got = {r.name: r.lr for r in resolve(rules, model, base={"a": (24, 4), "b": (7, 8), "c": (7,)}).params}
    assert got == {"a": 16 / 4 * 1000 + 2, "b": 16 / 8 * 1000 + 1, "c": 1000 + 0}
