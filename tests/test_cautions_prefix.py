"""A shared prefix around every name (Lightning's ``model.`` under ``build(rules, self)``, peft's
``base_model.model.``): one caution that names it and says how to strip or match it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import lrrules
from lrrules.errors import PlanProblemsError

RULES = """
version: 1
defaults: {lr: 0.1}
rules:
  - {name: stem, match: ['conv1.*', 'bn1.*']}
  - {name: body, match: 'layer*'}
  - {name: head, match: 'fc.*', lr_mult: 10}
"""


def _lightning_module() -> nn.Module:
    import lightning
    import timm

    class Classifier(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            with torch.device("meta"):
                self.model = timm.create_model("resnet18", pretrained=False, num_classes=3)

    return Classifier()


def _prefix_cautions(plan: lrrules.Plan) -> list[str]:
    return [c for c in plan.cautions if c.startswith("every name starts with")]


def test_a_lightning_module_passed_whole_gets_one_caution_naming_its_prefix() -> None:
    plan = lrrules.resolve(lrrules.loads(RULES), _lightning_module())
    assert len(plan.unmatched) == 62 and set(plan.unused_rules) == {"stem", "body", "head"}
    [caution] = _prefix_cautions(plan)
    assert caution.startswith("every name starts with 'model.'; 62 tensors are claimed by no rule")
    assert "build(rules, self.model)" in caution and "('model.*')" in caution
    assert caution in plan.warnings()


def test_build_on_the_wrapped_module_ends_its_error_with_the_hint() -> None:
    module = _lightning_module().to_empty(device="cpu")
    with pytest.raises(PlanProblemsError) as caught:
        lrrules.build(lrrules.loads(RULES), module)
    assert str(caught.value).splitlines()[-1].startswith("(hint: every name starts with 'model.'")


def test_the_inner_model_or_rules_that_match_the_prefix_get_no_caution() -> None:
    wrapped = _lightning_module()
    inner = lrrules.resolve(lrrules.loads(RULES), wrapped.model)
    assert inner.ok and not _prefix_cautions(inner)
    prefixed = lrrules.loads(RULES.replace("'conv1.*', 'bn1.*'", "'model.conv1.*', 'model.bn1.*'")
                             .replace("'layer*'", "'model.layer*'").replace("'fc.*'", "'model.fc.*'"))
    plan = lrrules.resolve(prefixed, wrapped)
    assert plan.ok and not _prefix_cautions(plan)


def test_a_rule_that_matches_nothing_on_a_bare_model_gets_no_prefix_caution() -> None:
    model = nn.Sequential()
    model.add_module("encoder", nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)))
    plan = lrrules.resolve(lrrules.loads(RULES.replace("lr_mult: 10}", "lr_mult: 10}\n  - {name: rest, fallback: true}")),
                           model)
    assert set(plan.unused_rules) == {"stem", "body", "head"}
    assert not _prefix_cautions(plan)  # 'encoder.' is shared, but no rule matches without it either


def test_a_peft_model_gets_the_caution_for_base_model_model() -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(num_hidden_layers=2, hidden_size=16, num_attention_heads=2, intermediate_size=32,
                        vocab_size=50, max_position_embeddings=32)
    model = get_peft_model(BertForSequenceClassification(config), LoraConfig(target_modules=["query", "value"], r=2))
    rules = lrrules.loads("version: 1\ndefaults: {lr: 0.1}\nrules:\n"
                          "  - {name: lora, match: {regex: '^bert\\..*lora_'}}\n"
                          "  - {name: classifier, match: 'classifier.*'}\n")
    plan = lrrules.resolve(rules, model)
    assert "lora" in plan.unused_rules
    [caution] = _prefix_cautions(plan)
    assert caution.startswith("every name starts with 'base_model.model.'")
    assert "'lora'" in caution and "build(rules, self.base_model.model)" in caution


def test_check_without_strict_prints_the_hint_with_the_unclaimed_tensors(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    [problem] = [f for f in lrrules.check(str(rules), [_lightning_module()]) if f.level == "problem"]
    assert "hint: every name starts with 'model.'" in problem.message
    assert lrrules.check(str(rules), [_lightning_module().model]) == []  # stripped: clean
