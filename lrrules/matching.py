"""Matchers compiled once from a rule file, matched against many parameters.

A compiled matcher answers ``match(param)`` with ``None`` (no match) or a dict of the named regex
groups it captured (empty when there are none), so a report can say what matched and why. Globs
become one regular expression per matcher; user regexes run with a time limit per match.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import LrrulesError
from .language import MatchFields, compile_regex
from .model import ParamInfo

#: Seconds one regex may spend on one name before the match is stopped as catastrophic.
REGEX_TIMEOUT = 0.25

Captures = dict[str, int | str]


class MatchError(LrrulesError):
    """A matcher that cannot decide: a regex past its time limit, a module glob without modules.

    ``what`` is the part of the matcher at fault; the resolver adds the rule and its place.
    """

    def __init__(self, message: str, what: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.what = what


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


@dataclass(frozen=True)
class Regex:
    patterns: tuple[str, ...]

    def match(self, param: ParamInfo) -> Captures | None:
        for pattern in self.patterns:
            try:
                found = compile_regex(pattern).search(param.name, timeout=REGEX_TIMEOUT)
            except TimeoutError:
                raise MatchError(
                    f"regex {pattern!r} took longer than {REGEX_TIMEOUT}s on parameter '{param.name}' and was "
                    "stopped; it backtracks catastrophically: remove nested repeats like (a+)+",
                    pattern,
                ) from None
            if found:
                return {k: int(v) if v.isdigit() else v for k, v in found.groupdict().items() if v is not None}
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
        return {} if self._regex.match(param.module) else None  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Ndim:
    values: frozenset[int]

    def match(self, param: ParamInfo) -> Captures | None:
        return {} if param.ndim in self.values else None


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
    return parts[0] if len(parts) == 1 else All(tuple(parts))
