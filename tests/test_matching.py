"""Matchers: glob and regex semantics, captures, and the prefix index that lets resolution skip
rules that cannot match (it must never skip one that can)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrrules.language import RuleSet
from lrrules.matching import Index, compile_matcher, glob_prefix, prefixes, regex_prefix
from lrrules.params import ParamInfo
from lrrules.resolve import resolve_params


def param(name: str, shape: tuple[int, ...] = (2, 2), module: str | None = "Linear") -> ParamInfo:
    return ParamInfo(name, shape, module, True, 0)


def spec(matcher: object) -> object:
    rules = RuleSet.model_validate({"version": 1, "defaults": {"lr": 1}, "rules": [{"name": "r", "match": matcher}]})
    return rules.rules[0].match


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("*", "a.b.c", True),
        ("a.*", "a.b.c", True),
        ("*.c", "a.b.c", True),
        ("a.?.c", "a.b.c", True),
        ("a", "a.b", False),
        ("A.*", "a.b", False),
        ("a.[bc].d", "a.c.d", True),
        ("a.[!bc].d", "a.c.d", False),
    ],
)
def test_glob_semantics(pattern: str, name: str, matches: bool) -> None:
    assert (compile_matcher(spec(pattern)).match(param(name)) is not None) is matches


def test_regex_captures_digits_as_ints_and_text_as_text() -> None:
    matcher = compile_matcher(spec({"regex": r"^blocks\.(?P<i>\d+)\.(?P<part>\w+)\."}))
    assert matcher.match(param("blocks.12.attn.weight")) == {"i": 12, "part": "attn"}
    assert matcher.match(param("head.weight")) is None


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        (r"^blocks\.(?P<i>\d+)\.", "blocks."),
        (r"^layer(?P<s>\d)\.", "layer"),
        (r"^ab?c", "a"),
        (r"^a\d", "a"),
        (r"^x(?:y|z)", "x"),
        (r"blocks", None),
        (r"^a|b", None),
        (r"^abc(?i)", None),
    ],
)
def test_regex_prefix_is_text_every_match_starts_with(pattern: str, prefix: str | None) -> None:
    assert regex_prefix(pattern) == prefix


def test_glob_prefix_stops_at_the_first_wildcard() -> None:
    assert [glob_prefix(g) for g in ("fc.*", "layer[12].*", "*", "a?b")] == ["fc.", "layer", "", "a"]


def test_matchers_that_can_match_anything_have_no_prefix() -> None:
    assert prefixes(spec("*")) is None
    assert prefixes(spec({"ndim": 1})) is None
    assert prefixes(spec({"module": "*Norm*"})) is None
    assert prefixes(spec({"not": "fc.*"})) is None
    assert prefixes(spec({"any": ["fc.*", {"ndim": 1}]})) is None
    assert prefixes(spec({"all": [{"ndim": 1}, "fc.*"]})) == {"fc."}
    assert prefixes(spec(["fc.*", "head.*"])) == {"fc.", "head."}


NAMES = st.from_regex(r"[a-c]{1,3}(\.[a-c0-9]{1,3}){0,3}", fullmatch=True)
GLOBS = st.from_regex(r"[a-c.*?0-9]{1,8}", fullmatch=True)
REGEXES = st.from_regex(r"\^?[a-c.0-9]{0,4}(\\\.|\\d\+|\(a\|b\))?[a-c.]{0,3}\$?", fullmatch=True)
MATCHERS = st.one_of(
    GLOBS,
    st.lists(GLOBS, min_size=1, max_size=3),
    st.builds(lambda r: {"regex": r}, REGEXES),
    st.builds(lambda g, n: {"glob": g, "ndim": n}, GLOBS, st.integers(1, 2)),
    st.builds(lambda a, b: {"any": [a, b]}, GLOBS, st.builds(lambda r: {"regex": r}, REGEXES)),
    st.builds(lambda a, b: {"all": [a, b]}, GLOBS, GLOBS),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(MATCHERS, min_size=1, max_size=8), st.lists(NAMES, min_size=1, max_size=10))
def test_the_index_never_leaves_out_a_matcher_that_matches(matchers: list[object], names: list[str]) -> None:
    specs = [spec(m) for m in matchers]
    index = Index(specs)
    compiled = [compile_matcher(s) for s in specs]
    for name in names:
        candidates = set(index.candidates(name))
        for position, matcher in enumerate(compiled):
            if matcher.match(param(name)) is not None:
                assert position in candidates, (name, matchers[position])


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
