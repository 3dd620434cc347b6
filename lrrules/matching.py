"""Matchers compiled once from a rule file, matched against many parameters.

A compiled matcher answers ``match(param)`` with ``None`` (no match) or a dict of the named regex
groups it captured (empty when there are none), so a report can say what matched and why. Globs
become one regular expression per matcher; user regexes run with a time limit per match and,
inside :func:`regex_budget`, a total time budget.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

from .errors import FormulaError, MatchError
from .formula import Formula
from .language import MatchFields, compile_regex
from .params import ParamInfo

#: Seconds one regex may spend on one name before the match is stopped as catastrophic.
REGEX_TIMEOUT = 0.25
#: Seconds all the regexes of one resolution may spend together (many names times many regexes).
REGEX_BUDGET = 10.0

Captures = dict[str, int | str]


class Matcher(Protocol):
    def match(self, param: ParamInfo) -> Captures | None: ...


def _glob_regex(patterns: Sequence[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


@dataclass(frozen=True)
class Glob:
    patterns: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", _glob_regex(self.patterns))

    def match(self, param: ParamInfo) -> Captures | None:
        return {} if self._regex.match(param.name) else None  # type: ignore[attr-defined]


def _units(pattern: str) -> Iterator[tuple[int, str]]:
    """The regex's units with their positions: an escape as its two characters (inside a character
    class too), a character class as one ``[`` unit before its escapes (it ends at the first
    unescaped ``]``), and any other character alone."""
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            yield i, pattern[i : i + 2]
            i += 2
        elif c == "[":
            yield i, "["
            i += 1
            while i < n and pattern[i] != "]":
                if pattern[i] == "\\":
                    yield i, pattern[i : i + 2]
                    i += 2
                else:
                    i += 1
            i += 1
        else:
            yield i, c
            i += 1


P = ParamSpec("P")
T = TypeVar("T")

#: Captures of more ASCII digits than this stay text: a float holds 15 digits exactly.
MAX_CAPTURE_DIGITS = 15


class RegexBudget:
    """The time all regexes of one resolution may still take together, in seconds.

    A per-match limit alone lets many slow regexes times many names run for hours; the resolver
    opens one budget per resolution (see :func:`regex_budget`) and every regex match draws on it.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.left = seconds


_BUDGET: ContextVar[RegexBudget | None] = ContextVar("lrrules_regex_budget", default=None)


@contextmanager
def regex_budget(seconds: float | None = None) -> Iterator[RegexBudget]:
    """Run the regex matches inside under one total time budget (``REGEX_BUDGET`` by default)."""
    budget = RegexBudget(REGEX_BUDGET if seconds is None else seconds)
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def with_regex_budget(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn`` run inside one :func:`regex_budget` per call."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        with regex_budget():
            return fn(*args, **kwargs)

    return run


def _capture(value: str) -> int | str:
    # int() takes any Unicode digits ('²' is a digit to str.isdigit but not to int) and would
    # spend quadratic time on thousands of them: only short runs of ASCII digits become numbers.
    if value.isascii() and value.isdigit() and len(value) <= MAX_CAPTURE_DIGITS:
        return int(value)
    return value


@dataclass(frozen=True)
class Regex:
    patterns: tuple[str, ...]

    def __post_init__(self) -> None:
        # Compiled here, once per rule set: the shared cache may hold fewer patterns than a file has.
        object.__setattr__(self, "_compiled", tuple(compile_regex(p) for p in self.patterns))

    def match(self, param: ParamInfo) -> Captures | None:
        # Every regex runs under the time limit: no judgement of which regexes are safe holds for
        # every flag, verbose mode, recursion and fuzzy matching alike, and the limit costs ~1 us.
        name = param.name
        budget = _BUDGET.get()
        for pattern, compiled in zip(self.patterns, self._compiled):  # type: ignore[attr-defined]
            limit = REGEX_TIMEOUT if budget is None else min(REGEX_TIMEOUT, max(budget.left, 0.0))
            started = time.perf_counter()
            try:
                if limit <= 0:
                    raise TimeoutError
                found = compiled.search(name, timeout=limit)
            except TimeoutError:
                if budget is not None and limit < REGEX_TIMEOUT:
                    raise MatchError(
                        f"the regexes took more than {budget.seconds}s in total and were stopped (at regex "
                        f"{pattern!r} on parameter '{param.name}'); use fewer or simpler regexes, or globs",
                        pattern,
                    ) from None
                raise MatchError(
                    f"regex {pattern!r} took longer than {REGEX_TIMEOUT}s on parameter '{param.name}' and was "
                    "stopped; it backtracks catastrophically: remove nested repeats like (a+)+",
                    pattern,
                ) from None
            finally:
                if budget is not None:
                    budget.left -= time.perf_counter() - started
            if found:
                return {k: _capture(v) for k, v in found.groupdict().items() if v is not None}
        return None


@dataclass(frozen=True)
class Module:
    patterns: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", _glob_regex(self.patterns))

    def match(self, param: ParamInfo) -> Captures | None:
        if param.module is None:
            raise MatchError(
                f"a 'module' matcher needs the module classes, and parameter '{param.name}' has none "
                "(a checkpoint holds only names and shapes); match by name or ndim instead",
                "module",
            )
        # The class or any of its bases, the way isinstance sees it: `MyNorm(nn.LayerNorm)` is a LayerNorm.
        regex = self._regex  # type: ignore[attr-defined]
        return {} if regex.match(param.module) or any(regex.match(b) for b in param.bases) else None


@dataclass(frozen=True)
class Ndim:
    values: frozenset[int]

    def match(self, param: ParamInfo) -> Captures | None:
        return {} if param.ndim in self.values else None


@dataclass(frozen=True)
class Where:
    """A ``where:`` condition over the shape variables and the owning module's plain attributes."""

    condition: Formula

    def match(self, param: ParamInfo) -> Captures | None:
        env: dict[str, Any] = dict(param.attrs)
        env.update(ndim=param.ndim, numel=param.numel, fan_in=param.fan_in, fan_out=param.fan_out)
        env.update((f"dim{k}", n) for k, n in enumerate(param.shape))
        missing = sorted(self.condition.names - env.keys())
        if missing:
            if param.module is None:
                raise MatchError(f"'where: {self.condition.text}' reads {missing[0]}, and parameter '{param.name}' "
                                 "has no module attributes (a checkpoint holds only names and shapes); use only "
                                 "ndim, numel, fan_in, fan_out, dim0 ... here", self.condition.text)
            have = ", ".join(k for k, _ in param.attrs) or "none"
            raise MatchError(f"'where: {self.condition.text}': parameter '{param.name}' ({param.module}, shape "
                             f"{list(param.shape)}) has no {missing[0]}; its module's attributes: {have}. Add "
                             "'module: ...' beside 'where' so that only modules that have it are tested",
                             self.condition.text)
        try:
            return {} if self.condition.evaluate(env) else None
        except FormulaError as exc:
            raise MatchError(f"'where: {self.condition.text}' {exc.message} for parameter '{param.name}'",
                             self.condition.text) from None


@dataclass(frozen=True)
class All:
    parts: tuple[Matcher, ...]

    def match(self, param: ParamInfo) -> Captures | None:
        captured: Captures = {}
        for part in self.parts:
            found = part.match(param)
            if found is None:
                return None
            captured.update(found)
        return captured


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Matcher, ...]

    def match(self, param: ParamInfo) -> Captures | None:
        for part in self.parts:
            found = part.match(param)
            if found is not None:
                return found
        return None


@dataclass(frozen=True)
class Not:
    part: Matcher

    def match(self, param: ParamInfo) -> Captures | None:
        return None if self.part.match(param) is not None else {}


def compile_matcher(spec: Any) -> Matcher:
    """Turn a validated matcher (a glob, a list of globs, or :class:`MatchFields`) into a matcher.

    >>> m = compile_matcher("fc.*")
    >>> m.match(ParamInfo("fc.bias", (2,), "Linear", True, 0))
    {}
    """
    if isinstance(spec, str):
        return Glob((spec,))
    if isinstance(spec, list):
        return Glob(tuple(spec))
    assert isinstance(spec, MatchFields)
    parts: list[Matcher] = []
    # Cheap tests first: a failed ndim or glob spares the regex its time.
    if spec.ndim is not None:
        parts.append(Ndim(frozenset(spec.ndim)))
    if spec.glob is not None:
        parts.append(Glob(tuple(spec.glob)))
    if spec.module is not None:
        parts.append(Module(tuple(spec.module)))
    if spec.not_ is not None:
        parts.append(Not(compile_matcher(spec.not_)))
    if spec.regex is not None:
        parts.append(Regex(tuple(spec.regex)))
    if spec.all_ is not None:
        parts.extend(compile_matcher(s) for s in spec.all_)
    if spec.any_ is not None:
        parts.append(AnyOf(tuple(compile_matcher(s) for s in spec.any_)))
    if spec.where is not None:  # last: `module: Conv2d` first spares a Linear the question of its groups
        parts.append(Where(spec.where))
    return parts[0] if len(parts) == 1 else All(tuple(parts))


# --- a prefix index: which matchers can match a name at all --------------------------------------

_GLOB_SPECIAL = "*?["
_REGEX_SPECIAL = set(".^$*+?{}[]()|\\")
_QUANTIFIERS = set("*+?{")


def glob_prefix(pattern: str) -> str:
    """The literal text every name a glob matches starts with: ``blocks.3.*`` -> ``blocks.3.``."""
    cut = min((i for i, c in enumerate(pattern) if c in _GLOB_SPECIAL), default=len(pattern))
    return pattern[:cut]


def regex_prefix(pattern: str) -> str | None:
    """The literal text every name a ``^``-anchored regex matches starts with, or ``None`` when the
    regex is not anchored (it may match anywhere). ``^blocks\\.(?P<i>\\d+)`` -> ``blocks.``."""
    if not pattern.startswith("^") or _top_level_bar(pattern):
        return None
    if any(pattern[i + 2 : i + 3] not in ("P", ":", "=", "!", "<", "#", ">") for i in _find_all(pattern, "(?")):
        return None  # an inline flag such as (?i) may change what the literal text matches
    out: list[str] = []
    i = 1
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and not pattern[i + 1].isalnum():
            literal, width = pattern[i + 1], 2
        elif c in _REGEX_SPECIAL:
            break
        else:
            literal, width = c, 1
        if i + width < len(pattern) and pattern[i + width] in _QUANTIFIERS:
            break  # this character may repeat or be absent: the prefix ends before it
        out.append(literal)
        i += width
    return "".join(out)


def _top_level_bar(pattern: str) -> bool:
    """Whether the regex has an alternative outside every group (``^a|b``): then ``^`` anchors one side."""
    depth = 0
    for _, unit in _units(pattern):
        if unit == "(":
            depth += 1
        elif unit == ")":
            depth -= 1
        elif unit == "|" and depth == 0:
            return True
    return False


def _find_all(text: str, part: str) -> list[int]:
    out, i = [], text.find(part)
    while i >= 0:
        out.append(i)
        i = text.find(part, i + 1)
    return out


def prefixes(spec: Any) -> frozenset[str] | None:
    """Literal prefixes, one of which every name the matcher matches starts with; ``None`` when the
    matcher can match names of any beginning (module, ndim, not, unanchored regexes)."""
    if isinstance(spec, str):
        found: frozenset[str] | None = frozenset({glob_prefix(spec)})
    elif isinstance(spec, list):
        found = frozenset(glob_prefix(p) for p in spec)
    elif spec.glob is not None:
        found = frozenset(glob_prefix(p) for p in spec.glob)
    elif spec.regex is not None:
        options = [regex_prefix(p) for p in spec.regex]
        found = None if any(p is None for p in options) else frozenset(p for p in options if p is not None)
    elif spec.any_ is not None:
        subs = [prefixes(s) for s in spec.any_]
        found = None if any(s is None for s in subs) else frozenset().union(*subs)  # type: ignore[arg-type]
    elif spec.all_ is not None:
        found = next((s for s in map(prefixes, spec.all_) if s is not None), None)
    else:
        found = None
    if found is not None and "" in found:
        return None
    return found


class Index:
    """Which of many matchers could match a name, by their literal prefixes.

    ``candidates(name)`` returns, in their given order, the positions of the matchers that are not
    excluded by their prefix: every matcher without a prefix, and those whose prefix starts the name.
    A rule file's hundreds of rules then cost a few dictionary look-ups per name, not a match each.
    """

    def __init__(self, specs: Sequence[Any]) -> None:
        self.always: list[int] = []
        self.by_prefix: dict[str, list[int]] = {}
        for position, spec in enumerate(specs):
            found = prefixes(spec)
            if found is None:
                self.always.append(position)
            else:
                for prefix in found:
                    self.by_prefix.setdefault(prefix, []).append(position)
        self.lengths = sorted({len(p) for p in self.by_prefix})
        self._cache: dict[str, list[int]] = {}

    def candidates(self, name: str) -> list[int]:
        get = self.by_prefix.get
        hits = [hit for n in self.lengths if (hit := get(name[:n])) is not None]
        if not hits:
            return self.always
        if len(hits) == 1 and not self.always:
            return hits[0]
        merged = set(self.always)
        for hit in hits:
            merged.update(hit)
        return sorted(merged)
