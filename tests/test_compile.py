"""Compiling a rule set: pure, cached by the rule set's value, nothing stored on the rule set."""

from __future__ import annotations

import copy

import lrrules
from lrrules.compile import compile_rules

TEXT = """\
version: 1
defaults: {lr: 0.1}
layers: {by: patterns, patterns: ['stem.*', {regex: '^blocks\\.0\\.'}, 'head.*']}
rules:
  - {name: b, match: 'blocks.*', lr_mult: 0.5 ** depth}
  - {name: a, match: ['stem.*', 'head.*']}
  - {name: rest, fallback: true}
phases:
  - {from_epoch: 1, freeze: 'stem.*'}
"""


def test_equal_rule_sets_share_one_compiled_form() -> None:
    rules = lrrules.loads(TEXT)
    assert compile_rules(copy.deepcopy(rules)) is compile_rules(rules)
    assert compile_rules(lrrules.loads(TEXT.replace("0.5", "0.25"))) is not compile_rules(rules)


def test_compiled_entries_run_in_name_order_with_the_phase_and_layer_matchers() -> None:
    compiled = compile_rules(lrrules.loads(TEXT))
    assert [e.name for e in compiled.claiming] == ["a", "b"]
    assert compiled.fallback is not None and compiled.fallback.name == "rest"
    assert len(compiled.layer_patterns) == 3
    (freeze, unfreeze), = compiled.phases
    assert freeze is not None and unfreeze is None
