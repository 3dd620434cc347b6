"""The errors lrrules raises: one small hierarchy under :class:`LrrulesError`.

Inner code raises the bare fact (a :class:`FormulaError` knows its offset in the formula, not the
file); the loader adds the file, line and column once, as a :class:`RuleError`, and gathers every
error of a file into one :class:`RuleFileError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class LrrulesError(Exception):
    """Base of every error lrrules raises on purpose; the CLI prints it without a traceback."""

    exit_code = 2


class FormulaError(LrrulesError):
    """A formula that cannot be parsed, uses what the language does not allow, or cannot be evaluated.

    ``offset`` is the 0-based position in ``expr`` the error points at (``None`` for the whole text).
    """

    def __init__(self, message: str, expr: str = "", offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expr = expr
        self.offset = offset

    def __str__(self) -> str:
        return self.message + caret(self.expr, self.offset)


def caret(expr: str, offset: int | None) -> str:
    """The formula on its own line with a ``^`` under ``offset``; empty without a formula."""
    if not expr:
        return ""
    line = f"\n    {expr}"
    if offset is not None and "\n" not in expr:
        line += "\n    " + " " * offset + "^"
    return line


@dataclass(frozen=True)
class Location:
    """Where something stands in a rule file; ``line`` and ``col`` are 1-based, 0 when unknown."""

    path: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}:{self.col}"
        return self.path


class RuleError(LrrulesError):
    """One problem in a rule file, with its place.

    ``loc`` is the path inside the document (``("rules", 3, "lr_mult")``), ``where`` the place in
    the file, ``expr``/``offset`` the formula and the spot in it, where the problem is in one.
    """

    def __init__(
        self,
        message: str,
        where: Location,
        loc: Sequence[str | int] = (),
        expr: str = "",
        offset: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.loc = tuple(loc)
        self.expr = expr
        self.offset = offset

    @property
    def path(self) -> str:
        return self.where.path

    @property
    def line(self) -> int:
        return self.where.line

    @property
    def col(self) -> int:
        return self.where.col

    def __str__(self) -> str:
        field = dotted(self.loc)
        prefix = f"{self.where}: " + (f"{field}: " if field else "")
        return prefix + self.message + caret(self.expr, self.offset)


class RuleFileError(LrrulesError):
    """Every problem found in one rule file, reported together. ``errors`` holds each :class:`RuleError`."""

    def __init__(self, errors: Sequence[RuleError]) -> None:
        self.errors = tuple(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class ModelError(LrrulesError):
    """A model that cannot be built or inspected (an unknown name, a factory that fails)."""


class OptimizerError(LrrulesError):
    """An optimizer ``type`` that names no optimizer, or options it does not take."""


class ResolveError(LrrulesError):
    """A rule file that is valid on its own but cannot be applied to this model.

    Raised for a formula that fails on a parameter (division by zero, a negative lr) and for
    asking a plan with unmatched or conflicting parameters for optimizer groups.
    """

    exit_code = 2


class PlanProblemsError(ResolveError):
    """Asked for param groups from a plan that has unmatched or conflicting parameters."""

    exit_code = 1


def dotted(loc: Sequence[str | int]) -> str:
    """``("rules", 3, "lr_mult")`` -> ``"rules[3].lr_mult"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
