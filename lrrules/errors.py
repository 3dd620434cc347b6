"""The errors lrrules raises: one small hierarchy under :class:`LrrulesError`.

Inner code raises the bare fact (a :class:`FormulaError` knows its offset in the formula, not the
file); the loader adds the file, line and column once, as a :class:`RuleError`, and gathers every
error of a file into one :class:`RuleFileError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def did_you_mean(word: str, choices: Iterable[str], n: int = 1, cutoff: float = 0.6) -> str:
    """The hint every "unknown name" error ends with, or ``""`` when no choice is close.

    >>> did_you_mean("lr_mul", ["lr_mult", "weight_decay"])
    " (did you mean 'lr_mult'?)"
    """
    close = difflib.get_close_matches(word, sorted(set(choices)), n=n, cutoff=cutoff)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def printable(text: str, lines: bool = False) -> str:
    """``text`` safe to show on a terminal: every character ``str.isprintable`` refuses (controls
    that could rewrite the screen, bidi overrides, zero-width and odd spaces) written as an escape;
    newlines too, unless ``lines`` keeps them.

    >>> print(printable("fc\x1b[2J.weight"))
    fc\\x1b[2J.weight
    """
    if text.isprintable() or lines and text.replace("\n", "").isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " or c == "\n" and lines else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def caret(expr: str, offset: int | None) -> str:
    """The formula on its own line with a ``^`` under ``offset``; empty without a formula."""
    if not expr:
        return ""
    line = f"\n    {printable(expr)}"
    if offset is not None and "\n" not in expr:
        line += "\n    " + " " * len(printable(expr[:offset])) + "^"
    return line


def dotted(loc: Sequence[str | int]) -> str:
    """``("rules", 3, "lr_mult")`` -> ``"rules[3].lr_mult"``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" if i else str(p) for i, p in enumerate(loc))


@dataclass(frozen=True)
class Location:
    """Where something stands in a rule file; ``line`` and ``col`` are 1-based, 0 when unknown."""

    path: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        return f"{printable(self.path)}:{self.line}:{self.col}" if self.line else printable(self.path)


@dataclass(frozen=True)
class Pointer:
    """Where a validator's problem points, below the value it validates: ``below`` the path from it
    on, ``key`` the key rather than its value, ``expr``/``offset`` the text and the spot for the
    caret. Validators attach one as ``POINTER_KEY`` of pydantic's error context; the loader reads it."""

    below: tuple[str | int, ...] = ()
    key: bool = False
    expr: str = ""
    offset: int | None = None


POINTER_KEY = "pointer"


class LrrulesError(Exception):
    """Base of every error lrrules raises on purpose; the CLI prints it without a traceback."""


class UsageError(LrrulesError):
    """A request that cannot be carried out as asked (an argument, an output file, a missing extra)."""


class ExpressionError(LrrulesError):
    """A problem inside a formula or regex, found before its file and place are known: ``expr`` is
    the text, ``offset`` the 0-based spot the error points at (``None``: the whole text)."""

    def __init__(self, message: str, expr: str = "", offset: int | None = None) -> None:
        super().__init__(message)
        self.message, self.expr, self.offset = message, expr, offset

    def __str__(self) -> str:
        return printable(self.message) + caret(self.expr, self.offset)


class FormulaError(ExpressionError):
    """A formula that cannot be parsed, uses what the language does not allow, or cannot be evaluated."""


class RegexError(ExpressionError):
    """A regex that does not compile, or costs more than :mod:`lrrules.regexes` allows."""


class RuleError(LrrulesError):
    """One problem in a rule file, with its place: ``loc`` the path in the document
    (``("rules", 3, "lr_mult")``), ``where`` (and ``path``, ``line``, ``col``) the place in the file."""

    def __init__(self, message: str, where: Location, loc: Sequence[str | int] = (), expr: str = "",
                 offset: int | None = None) -> None:
        super().__init__(message)
        self.message, self.where, self.loc, self.expr, self.offset = message, where, tuple(loc), expr, offset
        self.path, self.line, self.col = where.path, where.line, where.col

    def __str__(self) -> str:
        field = printable(dotted(self.loc))
        prefix = f"{self.where}: " + (f"{field}: " if field else "")
        return prefix + printable(self.message) + caret(self.expr, self.offset)


class RuleFileError(LrrulesError):
    """Every problem found in one rule file (``errors``, each a :class:`RuleError`), reported together."""

    def __init__(self, errors: Sequence[RuleError]) -> None:
        self.errors = tuple(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class ModelError(LrrulesError):
    """A model that cannot be built or inspected (an unknown name, a factory that fails)."""


class OptimizerError(LrrulesError):
    """An optimizer ``type`` that names no optimizer, or options it does not take; ``path``, ``line``
    and ``col`` say where (``line`` 0: the whole file, ``path`` empty: no file).

    >>> str(OptimizerError("option 'bettas' is not an option of AdamW", Location("r.yaml", 4, 7)))
    "r.yaml:4:7: option 'bettas' is not an option of AdamW"
    """

    def __init__(self, message: str, where: Location | str | None = None) -> None:
        place = Location(where) if isinstance(where, str) else where or Location("")
        self.message, self.path, self.line, self.col = message, place.path, place.line, place.col
        super().__init__(f"{place}: {message}" if place.path else message)


class ResolveError(LrrulesError):
    """A rule file valid on its own that cannot be applied to this model (or a plan whose model changed)."""


class PlanProblemsError(ResolveError):
    """Param groups asked of a plan with unmatched or conflicting parameters, or holding no tensors."""


class LayerError(LrrulesError):
    """A layer strategy that cannot be applied to this model."""


class MatchError(LrrulesError):
    """A matcher that cannot decide (a module glob without modules): ``what`` is the part at fault,
    ``at`` its path below the matcher's owner (``(2,)``: the third of ``layers.patterns``)."""

    def __init__(self, message: str, what: str = "", at: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message, self.what, self.at = message, what, at


class ResumeError(LrrulesError):
    """A state dict saved under another group layout (or not by lrrules) and so not loadable."""
