"""A rule set is plain data: it survives pickle, deepcopy, model_copy and a spawn-started worker."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
from pathlib import Path

import pytest

import lrrules
from lrrules.language import RuleSet

from .conftest import TinyNet

BASE = """\
version: 1
defaults: {lr: 0.1, weight_decay: 0.01}
rules:
  - {name: stem, match: ['conv1.*', 'bn1.*'], lr_mult: 0.5}
"""
CHILD = """\
version: 1
extends: base.yaml
vars: {decay: 0.5}
rules:
  - name: stages
    match: {regex: '^layer(?P<stage>\\d)\\.'}
    lr_mult: decay ** (3 - stage)
  - {name: head, match: 'fc.*', lr: base_lr * 10, weight_decay_mult: 0}
phases:
  - {from_epoch: 0, freeze: 'layer1.*'}
  - {from_epoch: 2, unfreeze: 'layer1.*'}
"""


@pytest.fixture()
def rules(tmp_path: Path) -> RuleSet:
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "child.yaml").write_text(CHILD)
    return lrrules.load(tmp_path / "child.yaml")


COPIES = {
    "pickle": lambda r: pickle.loads(pickle.dumps(r)),
    "deepcopy": copy.deepcopy,
    "model_copy": lambda r: r.model_copy(deep=True),
}


@pytest.mark.parametrize("how", COPIES)
def test_a_copied_rule_set_equals_the_original_and_resolves_the_same(rules: RuleSet, how: str) -> None:
    copied = COPIES[how](rules)
    assert copied == rules
    assert copied.path == rules.path  # the source map travels too: messages still name the file
    model = TinyNet()
    assert lrrules.resolve(copied, model).to_dict() == lrrules.resolve(rules, model).to_dict()


def test_a_copied_formula_still_evaluates_and_keeps_its_names(rules: RuleSet) -> None:
    formula = pickle.loads(pickle.dumps(rules.rules[1].lr_mult))
    assert formula == "decay ** (3 - stage)" and formula.names == {"decay", "stage"}
    assert formula.evaluate({"decay": 0.5, "stage": 1}) == 0.25


def test_resolving_leaves_the_rule_set_as_it_was(rules: RuleSet) -> None:
    before = pickle.dumps(rules)
    lrrules.resolve(rules, TinyNet())
    assert pickle.dumps(rules) == before


def test_a_copied_plan_keeps_its_data_and_drops_the_live_model(rules: RuleSet) -> None:
    plan = lrrules.resolve(rules, TinyNet())
    for copied in (pickle.loads(pickle.dumps(plan)), copy.deepcopy(plan)):
        assert copied == plan
        assert copied.to_dict() == plan.to_dict()
        assert copied.model is None


def _resolve_in_worker(rules: RuleSet) -> dict:
    return lrrules.resolve(rules, TinyNet()).to_dict()


@pytest.mark.slow
def test_a_spawn_started_worker_receives_and_resolves_a_rule_set(rules: RuleSet) -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result = pool.apply(_resolve_in_worker, (rules,))
    assert result == lrrules.resolve(rules, TinyNet()).to_dict()
