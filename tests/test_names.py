"""lrrules.resolve_names: the plan a model gives, from its names and shapes alone, on each kind of source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import lrrules
from lrrules.errors import LrrulesError, ModelError
from lrrules.sources import build

from .conftest import TinyNet

ROOT = Path(__file__).resolve().parent.parent

RULES = """\
version: 1
vars: {decay: 0.8}
defaults: {lr: 0.01, weight_decay: 0.05, eps: 1.0e-7}
unmatched: defaults
rules:
  - name: head
    match: {regex: '^(fc|head|classifier)\\.'}
    lr_mult: 10
  - name: backbone
    match: {regex: '^(?!fc\\.|head\\.|classifier\\.)'}
    lr_mult: "decay ** (num_layers - layer)"
modifiers:
  - name: no-decay
    match: ["*.bias", "*norm*", "*bn*"]
    weight_decay: 0
"""

FAMILIES = ["resnet18", "vit_tiny_patch16_224", "convnext_atto", "efficientnet_b0", "mobilenetv3_small_050"]


def _summary(plan: lrrules.Plan) -> dict[str, Any]:
    return {"groups": [g.to_dict() for g in plan.groups], "problems": plan.problems(),
            "params": [(a.name, a.shape, a.status, a.lr, a.weight_decay, a.layer) for a in plan.params]}


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> lrrules.RuleSet:
    path = tmp_path_factory.mktemp("rules") / "r.yaml"
    path.write_text(RULES)
    return lrrules.load(path)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_state_dict_gives_the_plan_its_model_gives(rules: lrrules.RuleSet, family: str) -> None:
    model = build(family, num_classes=3)
    assert _summary(lrrules.resolve_names(rules, model.state_dict())) == _summary(lrrules.resolve(rules, model))


@pytest.mark.parametrize("family", FAMILIES[:2])
def test_a_list_of_names_and_shapes_gives_the_plan_its_model_gives(rules: lrrules.RuleSet, family: str) -> None:
    model = build(family, num_classes=3)
    pairs = [(n, list(p.shape)) for n, p in model.named_parameters()]
    assert _summary(lrrules.resolve_names(rules, pairs)) == _summary(lrrules.resolve(rules, model))
    assert _summary(lrrules.resolve_names(rules, dict(pairs))) == _summary(lrrules.resolve(rules, model))


def test_each_checkpoint_kind_gives_the_plan_of_the_model_it_was_saved_from(
        rules: lrrules.RuleSet, tmp_path: Path) -> None:
    model = _tiny()
    expected = _summary(lrrules.resolve(rules, model))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "m.pt")
    save_file(state, str(tmp_path / "m.safetensors"))
    names = list(state)
    save_file({k: state[k] for k in names[::2]}, str(tmp_path / "a.safetensors"))
    save_file({k: state[k] for k in names[1::2]}, str(tmp_path / "b.safetensors"))
    (tmp_path / "m.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: "a.safetensors" if i % 2 == 0 else "b.safetensors" for i, k in enumerate(names)}}))
    assert _summary(lrrules.resolve_names(rules, tmp_path / "m.pt")) == expected
    # The index keeps the model's order; a single safetensors file stores its tensors sorted by name,
    # so the layer formula is refused there unless the caller says the order is the model's.
    assert _summary(lrrules.resolve_names(rules, tmp_path / "m.safetensors.index.json", ordered=True)) == expected
    with pytest.raises(LrrulesError, match="order"):
        lrrules.resolve_names(rules, tmp_path / "m.safetensors")
    by_name = sorted(n for n, p in model.named_parameters())
    plan = lrrules.resolve_names(rules, str(tmp_path / "m.safetensors"), ordered=True)
    assert [a.name for a in plan.params] == by_name


def test_problems_are_reported_as_for_a_model(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: head, match: 'fc.*'}\n"
                    "  - {name: weights, match: '*.weight'}\n")
    model = _tiny()
    pairs = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    plan = lrrules.resolve_names(path, pairs)
    assert not plan.ok
    assert plan.problems() == lrrules.resolve(lrrules.load(path), model).problems()


@pytest.mark.parametrize(("source", "message"), [
    ("rules.yaml", "not a checkpoint"),
    ([("w", (2, -1))], "not a shape"),
    ([("w", "22")], "not a shape"),
    ([("w", (2,)), ("w", (2,))], "given twice"),
    ([("", (2,))], "non-empty string"),
    ([("w",)], "(name, shape) pair"),
    ([("bn.running_mean", (2,))], "no parameters"),
    (42, "not a source"),
])
def test_what_is_no_source_of_names_is_a_model_error(rules: lrrules.RuleSet, source: Any, message: str) -> None:
    with pytest.raises(ModelError, match=message.replace("(", "\\(").replace(")", "\\)")):
        lrrules.resolve_names(rules, source)


@pytest.mark.parametrize("source", ["m.safetensors", "m.safetensors.index.json"])
def test_names_from_a_safetensors_file_never_import_torch(tmp_path: Path, source: str) -> None:
    # An index's shards are read by a thread pool: concurrent.futures, no torch either.
    save_file({"fc.weight": torch.zeros(2, 3)}, str(tmp_path / "a.safetensors"))
    save_file({"fc.bias": torch.zeros(2)}, str(tmp_path / "b.safetensors"))
    save_file({"fc.weight": torch.zeros(2, 3), "fc.bias": torch.zeros(2)}, str(tmp_path / "m.safetensors"))
    (tmp_path / "m.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"fc.weight": "a.safetensors", "fc.bias": "b.safetensors"}}))
    (tmp_path / "r.yaml").write_text("version: 1\ndefaults: {lr: 0.1}\nrules:\n  - {name: all, match: '*'}\n")
    code = ("import sys, lrrules; plan = lrrules.resolve_names(sys.argv[1], sys.argv[2]); "
            "print(plan.ok, len(plan.params), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.yaml"), str(tmp_path / source)],
                         capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.stdout.split() == ["True", "2", "False"], out.stderr
