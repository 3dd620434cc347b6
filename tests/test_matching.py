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


# --- the literal index: it may only ever leave out matchers that cannot match ---------------------

# Names with dots, digits, underscores, Unicode letters and digits, and a final newline now and then
# (`$` matches before it).
CHARS = st.sampled_from(list("abq_.0123") + ["é", "Ω", "²", "\n", "ß", "K"])
RICH_NAMES = st.text(CHARS, min_size=0, max_size=12)
PIECES = st.sampled_from([
    "a", "b", "q", "_", "é", "Ω", "ß", r"\.", ".", r"\d", r"\d+", r"\w*", "(?P<i>a|b)", "(a|bq)", "(?:é|Ω)",
    "[ab]", "[^a]", "[qé]", "a?", "b*", "(ab)+", "a{2}", "a{1,3}", r"\b", "(?=a)", "(?!b)", "|", "^", "$",
    r"\Z", r"\A", "(?i)", "(?i:a)", "(?x) a", "(?s).", "K", r"(?:a){e<=1}", r"\n", "(?r)a", r"\p{L}", "[[:alpha:]]",
])
RICH_REGEXES = st.lists(PIECES, min_size=1, max_size=6).map("".join)
RICH_GLOBS = st.lists(st.sampled_from(["a", "b", ".", "*", "?", "[ab]", "[!a]", "é", "Ω", "[a*b]", "q_", "["]),
                      min_size=1, max_size=6).map("".join)


RICH_MATCHERS = st.one_of(
    RICH_GLOBS,
    st.lists(RICH_GLOBS, min_size=1, max_size=3),
    RICH_REGEXES.map(lambda r: {"regex": r}),
    st.builds(lambda g, r: {"glob": g, "regex": r}, RICH_GLOBS, RICH_REGEXES),
    st.builds(lambda a, b: {"any": [a, {"regex": b}]}, RICH_GLOBS, RICH_REGEXES),
    st.builds(lambda a, b: {"all": [{"ndim": 2}, a, {"regex": b}]}, RICH_GLOBS, RICH_REGEXES),
    st.just({"ndim": 2}),
)


def check_index_equals_plain(matchers: list[object], names: list[str]) -> None:
    # The plain way: every matcher on every name. The index must give the same matches, captures included.
    specs = []
    for m in matchers:
        try:
            specs.append(spec(m))
        except Exception:  # noqa: BLE001  a pattern the language refuses is no matcher
            continue
    compiled = [compile_matcher(s) for s in specs]
    index = Index(specs)
    for name in names:
        plain = [(i, found) for i, m in enumerate(compiled) if (found := m.match(param(name))) is not None]
        candidates = index.candidates(name)
        assert candidates == sorted(set(candidates))
        indexed = [(i, found) for i in candidates if (found := compiled[i].match(param(name))) is not None]
        assert indexed == plain, (name, matchers)


@settings(max_examples=150, deadline=None)
@given(st.lists(RICH_MATCHERS, min_size=1, max_size=10), st.lists(RICH_NAMES, min_size=1, max_size=12))
def test_the_indexed_matcher_finds_exactly_what_trying_every_matcher_finds(matchers: list[object], names: list[str]) -> None:
    check_index_equals_plain(matchers, names)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None)
@given(st.lists(RICH_MATCHERS, min_size=1, max_size=10), st.lists(RICH_NAMES, min_size=1, max_size=12))
def test_the_indexed_matcher_equals_the_plain_one_on_many_more_cases(matchers: list[object], names: list[str]) -> None:
    check_index_equals_plain(matchers, names)


# What the one-pass reader of common regexes reads: its pieces and the parser's, mixed, malformed too.
QUICK_PIECES = st.sampled_from([
    "a", "b", "é", "_", " ", "#", "-", r"\.", r"\-", r"\\", r"\$", r"\^", r"\{", r"\d", r"\Z", r"\A", ".", "(",
    ")", "(?:", "(?P<g>", "(?P<h>", "(?P<1>", "(?P=g)", "(?=", "(?i)", "|", "*", "+", "?", "*?", "+?", "??", "abc",
    "*+", "^", "$", "[a]", "{2}", "}", "]", "ab", "(a|b)", "(ab|ac)", "(a|)", "(?:fc|norm)", r"\d+", r"\w",
    r"\s*", r"\b", r"\B", r"\W", "(?P<i>\\d+)",
])
QUICK_REGEXES = st.lists(QUICK_PIECES, min_size=0, max_size=8).map("".join)


@settings(max_examples=1500, deadline=None)
@given(QUICK_REGEXES)
def test_the_one_pass_reader_gives_the_keys_the_parser_gives(pattern: str) -> None:
    from lrrules.matching import _parsed_keys, _quick_atoms, _sequence_keys

    quick = _quick_atoms(pattern)
    if quick is not None:  # None: the pattern is left to the parser, whose keys regex_keys returns
        assert _sequence_keys(quick) == _parsed_keys(pattern)


@pytest.mark.slow
@settings(max_examples=8000, deadline=None)
@given(st.lists(QUICK_PIECES, min_size=0, max_size=14).map("".join))
def test_the_one_pass_reader_gives_the_parsers_keys_on_many_more_cases(pattern: str) -> None:
    test_the_one_pass_reader_gives_the_keys_the_parser_gives.hypothesis.inner_test(pattern)  # type: ignore[attr-defined]


def test_the_one_pass_reader_reads_the_patterns_of_ported_rule_files() -> None:
    from lrrules.matching import _quick_atoms

    for pattern in [r"^(?P<s>stages)\.3\.blocks\.7\.", r"stages\.3\.blocks\.7\.(?P<part>fc|norm)\.(weight|bias)$",
                    r"\.3\.blocks\.7\.(?:fc|norm)\.", r"^model\.layers\.(?P<i>\d+)\.", r"\.bias$"]:
        assert _quick_atoms(pattern) is not None, pattern


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"^(?P<b>blocks)\.", {("prefix", "blocks.")}),
        (r"\.(q|k|v)_proj\.weight$", {("suffix", f".{c}_proj.weight") for c in "qkv"}),
        (r"^stages\.3\.(?P<part>fc|norm)\.", {("prefix", "stages.3.fc."), ("prefix", "stages.3.norm.")}),
        (r"attn\.(?:qkv|proj)", {("contains", "attn.qkv"), ("contains", "attn.proj")}),
        (r"^head$", {("exact", "head")}),
        (r"(?i)^head", None),  # case-folded: literal text would not be literal
        (r"^(?:head){e<=1}", None),  # fuzzy matching in `regex`, literal braces to the stdlib
        (r"\d+", None),
    ],
)
def test_regex_keys_are_the_literal_text_every_match_holds(pattern: str, expected: set[tuple[str, str]] | None) -> None:
    from lrrules.matching import regex_keys

    assert regex_keys(pattern) == (None if expected is None else frozenset(expected))


def test_a_star_inside_a_glob_class_is_no_wildcard() -> None:
    from lrrules.matching import glob_keys

    assert glob_keys("*[a*bc*d]*") is None
    assert compile_matcher(spec("*[a*bc*d]*")).match(param("x*")) is not None


def test_literals_nested_too_deep_for_one_automaton_are_still_all_found() -> None:
    from lrrules.matching import _Substrings

    literals = ["x" + "a" * n for n in range(1, 1200)]  # each a prefix of the next: one nested group each
    found = _Substrings(literals).found("zz" + "x" + "a" * 700 + "b")
    assert found == {w for w in literals if w in "zz" + "x" + "a" * 700 + "b"}
    assert len(found) == 700


def test_hundreds_of_suffix_and_substring_rules_give_what_every_rule_on_every_name_gives() -> None:
    # Many keys of every kind at once, on names of the shape models have: the index and the plain loop agree.
    matchers = []
    for i in range(60):
        matchers += [{"regex": rf"^(?P<s>blocks)\.{i}\."}, {"regex": rf"\.{i}\.(q|k|v)_proj\.weight$"},
                     f"*.{i}.mlp.*", {"regex": rf"layers\.{i}\.(?:attn|mlp)\."}]
    names = [f"{root}.{i}.{part}" for root in ("blocks", "model.layers") for i in range(0, 70, 3)
             for part in ("q_proj.weight", "k_proj.bias", "mlp.fc1.weight", "attn.proj.weight")]
    check_index_equals_plain(matchers, names)
