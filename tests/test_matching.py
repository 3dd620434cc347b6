"""Matchers: glob, regex, module, ndim, role and where semantics, how any/all/not combine, and what
a match captures, on single names and on many."""

from __future__ import annotations

import fnmatch
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrrules.errors import MatchError
from lrrules.language import RuleSet
from lrrules.loader import loads
from lrrules.matching import compile_matcher
from lrrules.sources import resolve_names
from lrrules.params import ParamInfo
from lrrules.resolver import resolve_params


def param(name: str, shape: tuple[int, ...] = (2, 2), module: str | None = "Linear", **kw: object) -> ParamInfo:
    return ParamInfo(name, shape, module, True, 0, **kw)  # type: ignore[arg-type]


def spec(matcher: object) -> object:
    rules = RuleSet.model_validate({"version": 1, "defaults": {"lr": 1}, "rules": [{"name": "r", "match": matcher}]})
    return rules.rules[0].match


def matches(matcher: object, p: ParamInfo) -> object:
    return compile_matcher(spec(matcher)).match(p)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "a.b.c", True),
        ("a.*", "a.b.c", True),
        ("*.c", "a.b.c", True),
        ("a.?.c", "a.b.c", True),
        ("a", "a.b", False),
        ("A.*", "a.b", False),
        ("a.[bc].d", "a.c.d", True),
        ("a.[!bc].d", "a.c.d", False),
        ("*[a*bc*d]*", "x*", True),  # a star inside a class is no wildcard
    ],
)
def test_glob_semantics(pattern: str, name: str, expected: bool) -> None:
    assert (matches(pattern, param(name)) is not None) is expected


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[a-c.*?]{1,6}", fullmatch=True), st.from_regex(r"[a-c.]{0,6}", fullmatch=True))
def test_a_glob_matches_the_whole_name_as_fnmatchcase_does(pattern: str, name: str) -> None:
    assert (matches(pattern, param(name)) == {}) is fnmatch.fnmatchcase(name, pattern)
    assert (matches([pattern, "zz"], param(name)) == {}) is fnmatch.fnmatchcase(name, pattern)


def test_regex_captures_digits_as_ints_and_text_as_text() -> None:
    matcher = compile_matcher(spec({"regex": r"^blocks\.(?P<i>\d+)\.(?P<part>\w+)\."}))
    assert matcher.match(param("blocks.12.attn.weight")) == {"i": 12, "part": "attn"}
    assert matcher.match(param("head.weight")) is None


@pytest.mark.parametrize(
    ("captured", "value"),
    [("7", 7), ("0012", 12), ("²", "²"), ("1" * 15, int("1" * 15)), ("1" * 16, "1" * 16)],
)
def test_only_short_runs_of_ascii_digits_are_captured_as_numbers(captured: str, value: object) -> None:
    assert matches({"regex": r"^x(?P<i>.+)$"}, param("x" + captured)) == {"i": value}


def test_a_regex_is_searched_anywhere_and_the_first_of_several_that_matches_captures() -> None:
    both = {"regex": [r"\.(?P<a>\d)\.", r"(?P<b>\d)$"]}
    assert matches(both, param("x.3.y4")) == {"a": 3}
    assert matches(both, param("xy4")) == {"b": 4}
    assert matches({"regex": "attn"}, param("blocks.0.attn.qkv")) == {}


def test_all_merges_captures_any_takes_the_first_and_not_inverts() -> None:
    p = param("blocks.3.mlp.weight")
    assert matches({"all": [{"regex": r"\.(?P<i>\d+)\."}, {"regex": r"(?P<kind>mlp|attn)"}]}, p) == {"i": 3, "kind": "mlp"}
    assert matches({"all": [{"regex": r"\.(?P<i>\d+)\."}, "head.*"]}, p) is None
    assert matches({"any": ["head.*", {"regex": r"(?P<kind>mlp)"}, {"regex": r"(?P<i>\d)"}]}, p) == {"kind": "mlp"}
    assert matches({"not": "blocks.*"}, p) is None
    assert matches({"not": "head.*"}, p) == {}


def test_fields_of_one_matcher_combine_with_and() -> None:
    matcher = {"glob": "blocks.*", "ndim": 2, "module": "Linear"}
    assert matches(matcher, param("blocks.0.weight", (2, 2))) == {}
    assert matches(matcher, param("blocks.0.bias", (2,))) is None
    assert matches(matcher, param("blocks.0.weight", (2, 2), "Conv1D")) is None
    assert matches(matcher, param("head.weight", (2, 2))) is None


def test_a_module_matcher_sees_the_class_and_its_bases() -> None:
    assert matches({"module": "LayerNorm"}, param("n.weight", (4,), "MyNorm", bases=("LayerNorm",))) == {}
    assert matches({"module": "*Norm"}, param("n.weight", (4,), "RMSNorm")) == {}
    assert matches({"module": "Linear"}, param("n.weight", (4,), "RMSNorm")) is None


def test_module_where_and_role_on_a_checkpoint_say_what_is_missing() -> None:
    bare = param("fc.weight", (2, 2), None)
    with pytest.raises(MatchError, match="needs the module classes"):
        matches({"module": "Linear"}, bare)
    with pytest.raises(MatchError, match="needs the model's modules"):
        matches({"role": "head"}, bare)
    with pytest.raises(MatchError, match="reads groups, and parameter 'fc.weight' has no module attributes"):
        matches({"where": "groups > 1"}, bare)
    assert matches({"role": "bias"}, param("fc.bias", (2,), None, roles=(("bias", "named"),))) == {}


def test_where_reads_shapes_and_module_attributes() -> None:
    conv = param("c.weight", (8, 1, 3, 3), "Conv2d", attrs=(("groups", 8),))
    assert matches({"where": "groups == dim0 and ndim == 4"}, conv) == {}
    assert matches({"where": "groups == 1"}, conv) is None
    with pytest.raises(MatchError, match="has no in_features; its module's attributes: groups"):
        matches({"where": "in_features > 2"}, conv)


def test_role_matches_any_of_the_tensor_s_roles() -> None:
    tied = param("embed.weight", (10, 4), "Embedding", roles=(("embedding", "nn.Embedding"), ("head", "tied")))
    assert matches({"role": "head"}, tied) == {}
    assert matches({"role": "output"}, tied) == {}  # an alias of head
    assert matches({"role": ["norm", "bias"]}, tied) is None


def test_settings_are_not_shared_between_different_captures_of_one_name() -> None:
    rules = RuleSet.model_validate({
        "version": 1, "defaults": {"lr": 1.0},
        "rules": [{"name": "r", "match": {"regex": r"^b(?P<i>\d)"}, "lr_mult": "i"}],
        "modifiers": [{"name": "m", "match": {"regex": r"\.(?P<i>\d)$"}, "lr_mult": "i"}],
    })
    params = [ParamInfo("b1.2", (2,), "Linear", True, 0), ParamInfo("b2.1", (2,), "Linear", True, 1),
              ParamInfo("b3.2", (2,), "Linear", True, 2)]
    plan = resolve_params(rules, params)
    assert [a.lr for a in plan.params] == [2.0, 2.0, 6.0]


def test_hundreds_of_rules_on_many_names_each_claim_what_they_name() -> None:
    # 60 layers, one rule each, by glob and by regex alternately: each name goes to its layer's rule.
    rules = [{"name": f"l{i}", "match": f"layers.{i}.*" if i % 2 else {"regex": rf"^layers\.{i}\."}}
             for i in range(60)]
    plan = resolve_params(RuleSet.model_validate({"version": 1, "defaults": {"lr": 1}, "rules": rules}),
                          [ParamInfo(f"layers.{i}.{part}", (2,), "Linear", True, n)
                           for n, (i, part) in enumerate((i, p) for i in range(60) for p in ("q.weight", "k.bias"))])
    assert [a.rule for a in plan.params] == [f"l{i}" for i in range(60) for _ in range(2)]


MOE = """version: 1
defaults: {lr: 0.001}
rules:
  - {name: w1, match: {regex: '.*experts\\.\\d+\\.w1.*'}}
  - {name: w2, match: {regex: '.*experts\\.\\d+\\.w2.*'}}
  - {name: w3, match: {regex: '.*experts\\.(?P<x>\\d+)\\.w3.*'}, lr_mult: '1 + 0 * x'}
  - {name: rest, fallback: true}
"""


def moe_names(layers: int, experts: int) -> list[tuple[str, tuple[int, ...]]]:
    names = [(f"model.layers.{i}.mlp.experts.{e}.w{w}.weight", (8, 4))
             for i in range(layers) for e in range(experts) for w in (1, 2, 3)]
    return names + [(f"model.layers.{i}.self_attn.q_proj.weight", (4, 4)) for i in range(layers)]


@pytest.mark.parametrize("layers, experts", [(4, 8), pytest.param(64, 2084, marks=pytest.mark.slow)])
def test_unanchored_regexes_over_many_moe_names_resolve_every_name(layers: int, experts: int) -> None:
    # 400,192 names in the slow case: once "the regexes took more than 10.0s", now a plain loop.
    plan = resolve_names(loads(MOE), moe_names(layers, experts))
    assert plan.ok
    assert Counter(a.rule for a in plan.params) == {"w1": layers * experts, "w2": layers * experts,
                                                    "w3": layers * experts, "rest": layers}
