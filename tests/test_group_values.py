"""A param group's own option values are judged as the optimizer judges its settings (review of
issue 20): torch checks ``adjust_lr_fn`` or ``betas`` in the constructor only, and steps a group with
any value, so an unknown ``adjust_lr_fn`` on a rule silently trained Muon without its shape factor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import lrrules
from lrrules.cli import main
from lrrules.errors import OptimizerError

SEVERAL = """version: 1
defaults: {{lr: 0.02}}
optimizer: {{type: AdamW}}
optimizers:
  muon: {{type: Muon}}
rules:
  - {{name: mats, match: {{ndim: 2}}, optimizer: muon, options: {{adjust_lr_fn: {value}}}}}
  - {{name: rest, fallback: true}}
"""


def model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_build_refuses_a_group_value_torch_would_only_refuse_in_the_constructor() -> None:
    rules = lrrules.loads(SEVERAL.format(value="match_rms_adam"), "r.yaml")
    # torch itself: the same value as a constructor argument is refused ...
    with pytest.raises(ValueError):
        torch.optim.Muon([nn.Parameter(torch.ones(2, 2))], adjust_lr_fn="match_rms_adam")
    # ... and in a param group it is taken without a word: this is what lrrules must not hand out.
    torch.optim.Muon([{"params": [nn.Parameter(torch.ones(2, 2))], "adjust_lr_fn": "match_rms_adam"}])
    with pytest.raises(OptimizerError, match="adjust_lr_fn.*match_rms_adam") as caught:
        lrrules.build(rules, model())
    assert caught.value.line == 7  # the rule that sets it


class Strict(torch.optim.SGD):
    """A user's optimizer that checks a value in its constructor, as torch's own do: no table knows it."""

    def __init__(self, params, lr=0.1, momentum=0.0, **kwargs):  # type: ignore[no-untyped-def]
        if momentum > 0.99:
            raise ValueError(f"momentum {momentum} is too close to 1")
        super().__init__(params, lr=lr, momentum=momentum, **kwargs)


def test_a_group_value_the_optimizer_refuses_in_its_constructor_is_refused_at_build() -> None:
    text = ("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: head, match: '2.*', options: {momentum: 0.999}}\n"
            "  - {name: rest, fallback: true}\n")
    with pytest.raises(ValueError):  # the optimizer itself, given the value as a setting
        Strict([nn.Parameter(torch.ones(1))], momentum=0.999)
    with pytest.raises(OptimizerError, match="refuses group 'head' \\(momentum=0.999\\).*too close to 1"):
        lrrules.build(lrrules.loads(text, "r.yaml"), model(), optimizers={"default": Strict})


@pytest.mark.parametrize("value", ["original", "match_rms_adamw"])
def test_values_the_optimizer_takes_build(value: str) -> None:
    optimizer, _ = lrrules.build(lrrules.loads(SEVERAL.format(value=value), "r.yaml"), model())
    assert {g.get("adjust_lr_fn") for g in optimizer.optimizers["muon"].param_groups} == {value}


def test_a_refused_group_leaves_the_model_unfrozen() -> None:
    text = SEVERAL.format(value="match_rms_adam").replace("{name: rest, fallback: true}",
                                                          "{name: rest, fallback: true, freeze: true}")
    net = model()
    with pytest.raises(OptimizerError):
        lrrules.build(lrrules.loads(text, "r.yaml"), net)
    assert all(p.requires_grad for p in net.parameters())


def test_betas_out_of_range_on_a_rule_is_refused_at_build() -> None:
    text = ("version: 1\ndefaults: {lr: 0.001}\nrules:\n  - {name: all, match: '*', options: {betas: [1.5, 0.9]}}\n")
    with pytest.raises(ValueError):
        torch.optim.AdamW([nn.Parameter(torch.ones(1))], betas=(1.5, 0.9))
    with pytest.raises(OptimizerError, match="betas"):
        lrrules.build(lrrules.loads(text, "r.yaml"), model())


def test_check_refuses_an_unknown_muon_word_at_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\ndefaults: {lr: 0.02}\noptimizer: {type: Muon}\nrules:\n"
                     "  - {name: m, match: {ndim: 2}, options: {adjust_lr_fn: match_rms_adam}}\n"
                     "  - {name: rest, fallback: true, freeze: true}\n")
    assert main(["check", str(rules), "--model", "resnet18", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert f"{rules}:5:" in err and "did you mean 'match_rms_adamw'" in err


def test_a_rule_value_torch_refuses_is_placed_at_the_rule_and_quotes_torch() -> None:
    text = "version: 1\ndefaults: {lr: 0.001}\nrules:\n  - {name: all, match: '*', options: {betas: [1.5, 0.9]}}\n"
    with pytest.raises(ValueError) as torch_says:
        torch.optim.AdamW([nn.Parameter(torch.ones(1))], betas=(1.5, 0.9))
    with pytest.raises(OptimizerError) as caught:
        lrrules.build(lrrules.loads(text, "r.yaml"), model())
    assert (caught.value.line, caught.value.col) == (4, text.splitlines()[3].index("[1.5") + 1)
    assert str(torch_says.value) in caught.value.message and "group 'all'" in caught.value.message


def test_judge_groups_lets_each_optimizer_judge_its_groups_without_tensors() -> None:
    from lrrules.optim import judge_groups

    names = [("0.weight", (8, 4)), ("0.bias", (8,)), ("2.weight", (2, 8)), ("2.bias", (2,))]
    bad = lrrules.loads(SEVERAL.format(value="match_rms_adam"), "r.yaml")
    with pytest.raises(OptimizerError, match="optimizer 'muon' \\(Muon\\) refuses group 'mats'") as caught:
        judge_groups(bad, lrrules.resolve_names(bad, names))
    assert caught.value.line == 7
    good = lrrules.loads(SEVERAL.format(value="original"), "r.yaml")
    judge_groups(good, lrrules.resolve_names(good, names))  # no error: torch takes it


def test_the_signature_check_leaves_values_to_torch() -> None:
    from lrrules.optim import check_optimizer

    # torch builds a param group with these betas without a word: no message may say it refuses them.
    text = "version: 1\ndefaults: {lr: 0.001}\nrules:\n  - {name: all, match: '*', options: {betas: [1.5, 0.9]}}\n"
    torch.optim.AdamW([{"params": [nn.Parameter(torch.ones(1))], "betas": (1.5, 0.9)}])
    check_optimizer(lrrules.loads(text, "r.yaml"))


def test_a_modifier_option_the_optimizer_of_its_parameters_does_not_take_is_refused_at_the_modifier() -> None:
    text = ("version: 1\ndefaults: {lr: 0.1}\noptimizers:\n  sgd: {type: SGD}\nrules:\n"
            "  - {name: w, match: {ndim: 2}, optimizer: sgd}\n  - {name: rest, fallback: true}\n"
            "modifiers:\n  - {name: ams, match: '*', options: {amsgrad: true}}\n")
    with pytest.raises(OptimizerError, match="amsgrad .*are not options of optimizer 'sgd' \\(SGD\\)") as caught:
        lrrules.build(lrrules.loads(text, "r.yaml"), model())
    assert caught.value.line == 9


def test_settings_the_optimizer_refuses_are_placed_at_the_files_defaults() -> None:
    text = "version: 1\ndefaults:\n  lr: 0.1\n  eps: -1.0\nrules:\n  - {name: all, match: '*'}\n"
    with pytest.raises(ValueError) as torch_says:
        torch.optim.AdamW([nn.Parameter(torch.ones(1))], eps=-1.0)
    with pytest.raises(OptimizerError) as caught:
        lrrules.build(lrrules.loads(text, "r.yaml"), model())
    assert caught.value.path == "r.yaml" and caught.value.line == 3  # the defaults block, not only the file
    assert str(torch_says.value) in caught.value.message and "AdamW refused the settings" in caught.value.message
