"""Every example resolves cleanly against the model its header names, and the classic tables hold."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import timm
import torch

import lrrules
from lrrules.cli import main

# Subprocesses, training runs and model builds: seconds each (make test-fast skips them).
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parent.parent / "examples"
YAML_EXAMPLES = sorted(EXAMPLES.glob("*.yaml"))


def header_command(path: Path) -> list[str]:
    found = re.search(r"^#\s+lrrules (resolve .*)$", path.read_text(), re.M)
    assert found, f"{path.name} names its model in a header command"
    return shlex.split(found.group(1))


@pytest.mark.parametrize("path", YAML_EXAMPLES, ids=lambda p: p.name)
def test_example_resolves_cleanly_against_its_model(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(header_command(path)) == 0
    out = capsys.readouterr().out
    assert "unmatched" not in out and "conflicts" not in out and "warning" not in out


def resnet18() -> torch.nn.Module:
    with torch.device("meta"):
        return timm.create_model("resnet18", pretrained=False, num_classes=2)


def lrs(path: str, model: torch.nn.Module) -> dict[str, float]:
    return {a.name: a.lr for a in lrrules.resolve(lrrules.load(EXAMPLES / path), model).params}  # type: ignore[misc]


def test_per_tensor_table_matches_the_classic_loop() -> None:
    model = resnet18()
    expected, lr = {}, 0.01
    for name, _ in reversed(list(model.named_parameters())):
        expected[name] = lr
        lr *= 0.9
    got = lrs("resnet18-layerwise-per-tensor.yaml", model)
    assert got == pytest.approx(expected, rel=1e-12)
    assert got["fc.bias"] == 0.01 and got["fc.weight"] == pytest.approx(0.009)
    assert got["conv1.weight"] == pytest.approx(0.01 * 0.9**61)


def test_per_module_table_matches_the_classic_loop() -> None:
    model = resnet18()
    tops = list(dict.fromkeys(name.split(".")[0] for name, _ in model.named_parameters()))
    expected_top, lr = {}, 0.01
    for top in reversed(tops):
        expected_top[top] = lr
        lr *= 0.9
    got = lrs("resnet18-layerwise-per-module.yaml", model)
    assert got == pytest.approx({n: expected_top[n.split(".")[0]] for n in got}, rel=1e-12)
    assert got["layer4.0.conv1.weight"] == pytest.approx(0.009) and got["layer3.1.bn2.bias"] == pytest.approx(0.0081)
    assert got["bn1.weight"] == pytest.approx(0.01 * 0.9**5) and got["conv1.weight"] == pytest.approx(0.01 * 0.9**6)


def test_frozen_backbone_trains_only_the_head() -> None:
    plan = lrrules.resolve(lrrules.load(EXAMPLES / "resnet18-frozen-backbone.yaml"), resnet18())
    assert [n for g in plan.groups for n in g.params] == ["fc.weight", "fc.bias"]
    assert plan.groups[0].lr == pytest.approx(0.1) and plan.groups[0].options["momentum"] == 0.9


def test_no_decay_example_takes_decay_off_biases_and_norms_only() -> None:
    plan = lrrules.resolve(lrrules.load(EXAMPLES / "no-decay-bias-norm.json"), resnet18())
    decay = {a.name: a.weight_decay for a in plan.params}
    assert decay["layer1.0.conv1.weight"] == 0.05 and decay["fc.weight"] == 0.05
    assert decay["fc.bias"] == 0 and decay["layer1.0.bn1.weight"] == 0 and decay["bn1.bias"] == 0
    assert plan.ok and not plan.unused_rules


def test_vit_example_is_timms_own_layer_decay() -> None:
    from timm.optim import param_groups_layer_decay

    with torch.device("meta"):
        model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=10)
    names = {id(p): n for n, p in model.named_parameters()}
    expected = {
        names[id(p)]: (g["lr_scale"], g["weight_decay"])
        for g in param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.75,
                                          no_weight_decay_list=model.no_weight_decay())
        for p in g["params"]
    }
    plan = lrrules.resolve(lrrules.load(EXAMPLES / "vit-timm-layer-decay.yaml"), model)
    assert {a.name: (a.lr_scale, a.weight_decay) for a in plan.params} == expected


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_distributed_example_trains_in_two_processes(mode: str) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(EXAMPLES / "distributed_train.py"), "--mode", mode, "--steps", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [line for line in done.stdout.splitlines() if f"[{mode}] rank" in line]
    assert len(ranks) == 2 and len({line.split(": ", 1)[1] for line in ranks}) == 1, done.stdout
    assert "10 groups" in ranks[0] and "3 frozen" in ranks[0]
