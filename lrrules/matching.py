"""Matchers compiled once from a rule file: ``match(param)`` gives ``None`` or the named regex groups
captured (``{}`` when none). Resolution tries every matcher on every name, a plain loop; what a
regex may cost is bounded when it is compiled (:mod:`lrrules.regexes`)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import regex

from .errors import FormulaError, MatchError
from .formula import Formula
from .fields import MatchFields
from .params import ParamInfo
from .regexes import compile_regex
from .roles import NAME_ROLES, canonical

#: Captures of more ASCII digits than this stay text: a float holds 15 digits exactly.
MAX_CAPTURE_DIGITS = 15

Captures = dict[str, int | str]


class Matcher(Protocol):
    def match(self, param: ParamInfo) -> Captures | None: ...


def _glob_regex(patterns: Sequence[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


@dataclass(frozen=True)
class Glob:
    """``glob:``: the whole name matches one of the shell patterns (``*`` crosses dots)."""

    patterns: tuple[str, ...]
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", _glob_regex(self.patterns))

    def match(self, param: ParamInfo) -> Captures | None:
        return {} if self._regex.match(param.name) else None


def _capture(value: str) -> int | str:
    # only short runs of ASCII digits: int() of thousands of (Unicode) digits is quadratic
    if value.isascii() and value.isdigit() and len(value) <= MAX_CAPTURE_DIGITS:
        return int(value)
    return value


@dataclass(frozen=True)
class Regex:
    """``regex:``: a pattern is found in the name (searched); its named groups captured, digits as numbers."""

    patterns: tuple[str, ...]
    _compiled: tuple[regex.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", tuple(compile_regex(p) for p in self.patterns))

    def match(self, param: ParamInfo) -> Captures | None:
        for compiled in self._compiled:
            found = compiled.search(param.name)
            if found:
                return {k: _capture(v) for k, v in found.groupdict().items() if v is not None}
        return None


@dataclass(frozen=True)
class Module:
    """``module:``: the owning module's class, or one of its bases, matches one of the globs."""

    patterns: tuple[str, ...]
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _seen: dict[tuple[str | None, tuple[str, ...]], bool] = field(init=False, repr=False, compare=False,
                                                                  default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", _glob_regex(self.patterns))

    def match(self, param: ParamInfo) -> Captures | None:
        if param.module is None:
            raise MatchError(
                f"a 'module' matcher needs the module classes, and parameter '{param.name}' has none "
                "(a checkpoint holds only names and shapes); match by name or ndim instead",
                "module",
            )
        # the class or a base, as isinstance sees it; under a tied tensor's other name, that name's module
        module, bases, _ = param.owner(param.name) if param.alias_modules else (param.module, param.bases, ())
        found = self._seen.get((module, bases))
        if found is None:  # once per class: a model has few classes and many tensors
            found = self._seen[(module, bases)] = bool(
                (module is not None and self._regex.match(module)) or any(self._regex.match(b) for b in bases))
        return {} if found else None


@dataclass(frozen=True)
class Ndim:
    values: frozenset[int]

    def match(self, param: ParamInfo) -> Captures | None:
        return {} if param.ndim in self.values else None


@dataclass(frozen=True)
class Role:
    """``role:``: the tensor has one of these roles (see :mod:`lrrules.roles`), decided from the model."""

    roles: frozenset[str]

    def match(self, param: ParamInfo) -> Captures | None:
        if param.module is None and not self.roles <= NAME_ROLES:
            asked = ", ".join(sorted(self.roles - NAME_ROLES))
            raise MatchError(
                f"'role: {asked}' needs the model's modules, and parameter '{param.name}' has none (a checkpoint "
                f"holds only names and shapes, which decide only the role {', '.join(sorted(NAME_ROLES))}); "
                "resolve against the model, or match by name or ndim instead", "role")
        return {} if any(role in self.roles for role, _ in param.roles) else None


@dataclass(frozen=True)
class Where:
    """A ``where:`` condition over the shape variables and the owning module's plain attributes."""

    condition: Formula

    def match(self, param: ParamInfo) -> Captures | None:
        env: dict[str, Any] = dict(param.owner(param.name)[2] if param.alias_modules else param.attrs)
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
    """Every part matches; the captures of all of them."""

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
    """The first part that matches, with its captures."""

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
    """A validated matcher (a glob, a list of globs, or :class:`MatchFields`) compiled.

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
    # cheap tests first: a failed ndim or glob spares the regex
    if spec.ndim is not None:
        parts.append(Ndim(frozenset(spec.ndim)))
    if spec.glob is not None:
        parts.append(Glob(tuple(spec.glob)))
    if spec.module is not None:
        parts.append(Module(tuple(spec.module)))
    if spec.role is not None:
        parts.append(Role(frozenset(canonical(r) for r in spec.role)))
    if spec.not_ is not None:
        parts.append(Not(compile_matcher(spec.not_)))
    if spec.regex is not None:
        parts.append(Regex(tuple(spec.regex)))
    if spec.all_ is not None:
        parts.extend(compile_matcher(s) for s in spec.all_)
    if spec.any_ is not None:
        parts.append(AnyOf(tuple(compile_matcher(s) for s in spec.any_)))
    if spec.where is not None:  # last: `module: Conv2d` spares a Linear the question of its groups
        condition: Any = spec.where  # a str to the schema, a Formula once validated
        assert isinstance(condition, Formula)
        parts.append(Where(condition))
    return parts[0] if len(parts) == 1 else All(tuple(parts))
