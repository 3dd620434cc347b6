"""The regex dialect: what a regex unrolls into is counted before it is compiled, exactly enough
that the legitimate ones pass and the memory bombs do not; and the shapes whose backtracking
explodes on a name are refused at their place, the ordinary ones accepted."""

from __future__ import annotations

import json

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from lrrules import loads
from lrrules.errors import RegexError, RuleFileError
from lrrules.regexes import MAX_REGEX_SIZE, check_regex, regex_size

# --- a model of the count, written from its definition, over regex trees -------------------------
# Each strategy gives (text, size, kind): the size worked out from the tree by the documented rules,
# never by reading the text; kind "atom" (one item a quantifier may follow) or "seq".

ATOMS = st.sampled_from(["a", "b", r"\d", r"\.", "[a-z_]", "[]x]", "[^]x]", ".", r"\x41", r"\p{Lu}", r"\u00e9",
                         "[[:digit:]]", "[a\\]b]"]).map(lambda t: (t, 1, "atom"))


def _group(inner: tuple[str, int, str], capture: bool) -> tuple[str, int, str]:
    text, size, _ = inner
    return ("(" + text + ")", size + 1, "atom") if capture else ("(?:" + text + ")", size, "atom")


def _repeat(body: tuple[str, int, str], how: tuple[int, int | None, str]) -> tuple[str, int, str]:
    text, size, _ = body
    least, most, suffix = how
    written = {(0, 1): "?", (0, None): "*", (1, None): "+"}.get((least, most)) if least < 2 else None
    if written is None or suffix == "counted":
        written = "{%d}" % least if most == least else "{%d,}" % least if most is None else "{%d,%d}" % (least, most)
    lazy = suffix if suffix in ("?", "+") else ""
    # {m}: the body m times (once for {0}); otherwise m times plus the loop, which holds it once more, and 1.
    grown = size * max(least, 1) if most == least else size * (least + 1) + 1
    return text + written + lazy, grown, "seq"


COUNTS = st.tuples(st.integers(0, 6), st.integers(0, 6), st.sampled_from(["", "?", "+", "counted"])).map(
    lambda t: (min(t[0], t[1]), max(t[0], t[1]) if t[2] != "counted" or t[0] != t[1] else t[1], t[2]))
OPEN = st.tuples(st.integers(0, 6), st.sampled_from(["", "?", "+"])).map(lambda t: (t[0], None, t[1]))


def _seq(parts: list[tuple[str, int, str]], spaced: bool) -> tuple[str, int, str]:
    return (" " if spaced else "").join(p[0] for p in parts), sum(p[1] for p in parts), "seq"


def _alternation(arms: list[tuple[str, int, str]]) -> tuple[str, int, str]:
    return "|".join(a[0] for a in arms), sum(a[1] for a in arms) + len(arms) - 1, "seq"


def trees(spaced: bool) -> st.SearchStrategy[tuple[str, int, str]]:
    def extend(inner: st.SearchStrategy[tuple[str, int, str]]) -> st.SearchStrategy[tuple[str, int, str]]:
        seq = st.lists(inner, min_size=1, max_size=3).map(lambda ps: _seq(ps, spaced))
        body = st.one_of(seq, st.lists(inner, min_size=2, max_size=3).map(_alternation))
        group = st.tuples(body, st.booleans()).map(lambda t: _group(*t))
        atom = st.one_of(inner.filter(lambda t: t[2] == "atom"), group)
        return st.one_of(group, st.tuples(atom, st.one_of(COUNTS, OPEN)).map(lambda t: _repeat(*t)), seq)

    return st.recursive(ATOMS, extend, max_leaves=12)


# The recursive strategy's description is long, and hypothesis warns when it builds it.
quiet = pytest.mark.filterwarnings("ignore:Generating overly large repr")


@quiet
@settings(max_examples=300, deadline=None)
@given(trees(spaced=False))
def test_the_count_is_the_sum_of_sequences_and_branches_and_the_product_of_repeats(tree: tuple[str, int, str]) -> None:
    text, size, _ = tree
    regex.compile(text)  # the generated text is a regex the engine reads as the tree
    assert regex_size(text) == size


@quiet
@settings(max_examples=200, deadline=None)
@given(trees(spaced=True))
def test_spaces_and_comments_under_the_verbose_flag_count_nothing(tree: tuple[str, int, str]) -> None:
    text, size, _ = tree
    verbose = "(?x)" + text.replace(" ", "  # a note (with a ')' and a '{9}')\n ")
    regex.compile(verbose)
    assert regex_size(verbose) == size
    assert regex_size("(?x:" + text + ")") == size


@pytest.mark.parametrize("body", ["a", "(?:ab|c)", r"(?:[a-z]\d)", "(x)"])
@pytest.mark.parametrize("times", [0, 1, 7, 1000, 123456789])
def test_a_counted_repeat_writes_out_its_least_count_and_an_open_one_loops(body: str, times: int) -> None:
    one = regex_size(body)
    assert regex_size(f"{body}{{{times}}}") == one * max(times, 1)
    assert regex_size(f"{body}{{{times},}}") == one * (times + 1) + 1
    assert regex_size(f"{body}{{{times},{times + 10**9}}}") == one * (times + 1) + 1  # the most is a loop


@pytest.mark.parametrize("pattern", [
    r"^(?:[a-z0-9_]+\.){0,100000}weight$",  # any depth of dotted names: a loop, not 100,000 copies
    r"\d{1,500000}",
    r"(?:(?:a{2,1000}\.){2,1000}-){2,1000}",
    r"^blocks\.(?P<i>\d{1,3})\.(?:attn|mlp)\.(?:[a-z_]+\.){0,9999}(?:weight|bias)$",
    r"(?:a{0,1000}\.){1000}",
    "(?x) ^ encoder \\. layer \\. (?P<n> \\d+ ) \\.  # the layer index\n (?: [a-z_]+ \\. ){0,50000} weight $",
])
def test_a_regex_whose_maximum_counts_are_large_but_whose_unrolled_size_is_small_is_accepted(pattern: str) -> None:
    assert regex_size(pattern) <= 10_000
    rules = loads(json.dumps({"version": 1, "defaults": {"lr": 0.1},
                              "rules": [{"name": "a", "match": {"regex": pattern}}]}), fmt="json")
    assert rules.rules[0].match.regex == [pattern]  # type: ignore[union-attr]


@pytest.mark.parametrize("pattern", [
    "(?x)((a{1000}) {1000}) {1000}",  # verbose: the space is no item, the repeat is of the group
    "(?x)(a{1000})#(\n{1000}",  # the '(' is in a comment
    "(?x:(?:a{1000}) {1000})",
    "(?:a{1000,}){1000}",  # the least count is written out
    "(?:a{1000,1001}){1000}",
    "(?:(?:a{1000}){0}){1000}",  # {0} still compiles its body once
    "(?:a{400}|b{400}){400}",
    "(?#(){1000}(?:a{1000}){1000}",  # a comment ends at the first ')'
    "[(](?:a{1000}){1000}",
    "(?i)(?:a{1000}){1000}",
    "(?(1)(?:a{1000}){1000})",
])
def test_a_regex_that_unrolls_past_the_limit_is_refused_however_it_is_written(pattern: str) -> None:
    assert regex_size(pattern) > MAX_REGEX_SIZE
    with pytest.raises(RegexError, match="expands to more than"):
        check_regex(pattern)
    with pytest.raises(RuleFileError, match="expands to more than 100000 units"):
        loads(json.dumps({"version": 1, "defaults": {"lr": 0.1}, "rules": [{"name": "a", "match": {"regex": pattern}}]}),
              fmt="json")


def test_a_huge_count_saturates_instead_of_growing_without_end() -> None:
    pattern = "(" * 2000 + "a" + "){999999999999999999999}" * 2000
    assert MAX_REGEX_SIZE < regex_size(pattern) <= 10**15


def test_an_invalid_regex_is_a_regex_error_with_its_position() -> None:
    with pytest.raises(RegexError) as caught:
        check_regex("ab(c")
    assert (caught.value.expr, caught.value.offset) == ("ab(c", 4)
    assert caught.value.message == "invalid regex: missing )"


# --- what a regex may cost: the shape, judged before any name is seen ---------------------------

EXPONENTIAL, POWER = "exponentially many ways", "costs a power of its length"


@pytest.mark.parametrize(("pattern", "refused", "col"), [
    # nested repeats and repeated alternatives that can match the same text: exponential
    ("(a+)+$", EXPONENTIAL, 1),
    ("(a|aa)*b", EXPONENTIAL, 1),
    ("(.*)*x", EXPONENTIAL, 1),
    (r"(\w+\s?)*$", EXPONENTIAL, 1),
    ("^(a|aa)+$", EXPONENTIAL, 2),
    (r"^(?:a|a(?:a))+\d$", EXPONENTIAL, 2),
    ("(?:a{1,3})+", EXPONENTIAL, 1),
    ("(?:a{0,9}){9}", EXPONENTIAL, 1),  # a counted repeat writes its body out: the same blow-up
    ("(?x) (.|.|.) + [A-Z]$", EXPONENTIAL, 6),  # verbose: the space hid the repeat of a group
    ("(?x)(.|.|.) (?#a comment) +[A-Z]$", EXPONENTIAL, 5),
    (r"(?i)^(?P<x>a|aa)*$", EXPONENTIAL, 6),
    ("(?:(?:a|a)\\.)*x", EXPONENTIAL, 1),  # each pass ends at a dot, but each pass has two ways
    (r"(a)\1+", EXPONENTIAL, 4),  # a back reference: no class says what it matches
    # more than two repeats or alternatives that trade characters: a power of the name's length
    (".*a.*b.*c", POWER, 7),
    (r"\w*\w*\w*x", POWER, 7),
    ("(a|ab)(a|ab)(a|ab)x", POWER, 13),
    ("b*a{0}b*a{0}b*a{0}b", POWER, 13),  # a{0} is no text: the b that follows it follows the repeat
    # unbounded by construction
    ("(?R)?a", "recursion", 1),
    ("(?:ab){e<=1}", "fuzzy matching", 7),
    # accepted: each repeat is followed by what it cannot match, or ends the regex
    (r"^blocks\.(?P<i>\d+)\.", None, 0),
    (r".*experts\.\d+\.w1.*", None, 0),
    (r"\.(q|k|v)_proj\.weight$", None, 0),
    (r"^(?:[a-z0-9_]+\.)*weight$", None, 0),  # each pass ends at the first dot
    (r"^(?:(?:attn|mlp)\.)+", None, 0),
    ("(?:a|b)+c", None, 0),  # one character a pass, one way
    (r"(?:\.\d)+", None, 0),
    (r"^(?P<a>.*)\.(?P<b>.*)\.weight$", None, 0),  # two that trade: n ** 3 at most
    (".*attn.*weight", None, 0),
    (r"^b(?P<i>.+)$", None, 0),
    (r"^layer(?P<stage>\d)\.", None, 0),
    (r"stages\.3\.blocks\.7\.(?P<part>fc|norm)\.(weight|bias)$", None, 0),
    ("(?=.*attn)(?!.*bias)", None, 0),
])
def test_a_regex_whose_backtracking_can_explode_is_refused_at_its_place(pattern: str, refused: str | None,
                                                                        col: int) -> None:
    line = "  - {name: a, match: {regex: '" + pattern + "'}}"
    text = "version: 1\ndefaults: {lr: 0.1}\nunmatched: defaults\nrules:\n" + line + "\n"
    if refused is None:
        assert loads(text).rules[0].match.regex == [pattern]  # type: ignore[union-attr]
        return
    with pytest.raises(RuleFileError, match=refused) as caught:
        loads(text)
    error = caught.value.errors[0]
    assert (error.line, error.col) == (5, line.index("'") + 1 + col)
    assert "Traceback" not in str(caught.value)


def test_the_refusal_says_what_to_write_instead() -> None:
    with pytest.raises(RegexError) as caught:
        check_regex(r"(\w+\.)*x(\w+\s?)*")
    assert caught.value.offset == 9  # the second group: the first ends each pass at a dot
    assert "end the group with a character nothing else in it matches ((?:[a-z_]+\\.)*)" in caught.value.message
    with pytest.raises(RegexError, match=r"follow a repeat by a character it cannot match \(\[\^\.\]\*"):
        check_regex(".*a.*b.*c")


def test_every_regex_of_the_examples_and_presets_is_accepted() -> None:
    from pathlib import Path

    from lrrules.loader import load

    root = Path(__file__).parent.parent
    files = sorted((root / "examples").glob("*.yaml")) + sorted((root / "lrrules" / "presets").glob("*.yaml"))
    assert len(files) > 5
    for path in files:
        load(path)  # raises at the first regex refused


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(list("ab.\\()[]{}|*+?^$#:=!<>PRx-, 0129eid\n") + ["(?", "(?P<g>", "(?x)", "{2,}"]),
                max_size=16).map("".join))
def test_any_text_compiles_or_is_refused_with_our_error_at_a_place_inside_it(pattern: str) -> None:
    try:
        check_regex(pattern)
    except RegexError as exc:
        assert exc.offset is None or 0 <= exc.offset <= len(pattern)
