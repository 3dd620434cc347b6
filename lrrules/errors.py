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
    """The hint every "unknown name" error ends with: `` (did you mean 'x'?)``, or ``""`` when no
    choice is close.

    >>> did_you_mean("lr_mul", ["lr_mult", "weight_decay"])
    " (did you mean 'lr_mult'?)"
    >>> did_you_mean("AdamWW", ["AdamW", "Adam", "SGD"], n=2)
    " (did you mean 'AdamW', 'Adam'?)"
    >>> did_you_mean("zzz", ["lr"])
    ''
    """
    close = difflib.get_close_matches(word, sorted(set(choices)), n=n, cutoff=cutoff)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


class LrrulesError(Exception):
    """Base of every error lrrules raises on purpose; the CLI prints it without a traceback and maps
    it to an exit code in one place. Each kind of refusal has its subclass below."""


class UsageError(LrrulesError):
    """A request that cannot be carried out as asked: a command-line argument, an output file name,
    an optional extra that is not installed."""


class ExpressionError(LrrulesError):
    """A problem inside one text of the rule file's small languages (a formula, a regex), found
    before the file and place are known: ``expr`` is the text, ``offset`` the 0-based position in
    it the error points at (``None`` for the whole text). Raised as one of the subclasses below.
    """

    def __init__(self, message: str, expr: str = "", offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expr = expr
        self.offset = offset

    def __str__(self) -> str:
        return printable(self.message) + caret(self.expr, self.offset)


class FormulaError(ExpressionError):
    """A formula that cannot be parsed, uses what the language does not allow, or cannot be evaluated."""


class RegexError(ExpressionError):
    """A regex that does not compile, or that would unroll into more than the limits allow
    (:mod:`lrrules.regexes`)."""


def printable(text: str, lines: bool = False) -> str:
    """``text`` safe to show on a terminal: control characters (an escape sequence could clear the
    screen or rewrite a line), bidirectional overrides and line separators are written as ``\\x1b``,
    ``\\u202e``..., and so are zero-width characters and spaces other than U+0020 (``\\xa0``); newlines
    too, unless ``lines`` keeps them (text that is several lines by design).

    >>> print(printable("fc\x1b[2J.weight"))
    fc\\x1b[2J.weight
    """
    if text.isprintable() or lines and text.replace("\n", "").isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " or c == "\n" and lines else _escape(c) for c in text)


def _escape(char: str) -> str:
    # Every character str.isprintable refuses: controls, format characters (zero-width, bidi),
    # separators, surrogates, private and unassigned code points, and the spaces other than U+0020
    # (no-break, ideographic, ...), which show as a plain space.
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


@dataclass(frozen=True)
class Location:
    """Where something stands in a rule file; ``line`` and ``col`` are 1-based, 0 when unknown."""

    path: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{printable(self.path)}:{self.line}:{self.col}"
        return printable(self.path)


@dataclass(frozen=True)
class Pointer:
    """Where a validator's problem points, below the value it validates (the loader places it).

    ``below`` is the path from that value on (the key ``momentum`` of the options checked); ``key``
    points at the key rather than its value (a misspelt key); ``expr`` and ``offset`` are the formula
    or regex and the 0-based spot in it for the caret. Validators attach one to their error as
    ``POINTER_KEY`` of pydantic's error context, and the loader reads it in one place.

    >>> Pointer(below=("learning_rate",), key=True)
    Pointer(below=('learning_rate',), key=True, expr='', offset=None)
    """

    below: tuple[str | int, ...] = ()
    key: bool = False
    expr: str = ""
    offset: int | None = None


#: The one key of pydantic's error context that carries a :class:`Pointer`.
POINTER_KEY = "pointer"


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
        field = printable(dotted(self.loc))
        prefix = f"{self.where}: " + (f"{field}: " if field else "")
        return prefix + printable(self.message) + caret(self.expr, self.offset)


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
    """An optimizer ``type`` that names no optimizer, or options it does not take.

    ``path``, ``line`` and ``col`` say where in the rule file (``line`` 0: the whole file, ``path``
    empty: no file), ``message`` what is wrong; ``str()`` is ``file:line:col: message``, so
    ``check --format github`` and JSON put it on its line.

    >>> str(OptimizerError("option 'bettas' is not an option of AdamW", Location("r.yaml", 4, 7)))
    "r.yaml:4:7: option 'bettas' is not an option of AdamW"
    """

    def __init__(self, message: str, where: Location | str | None = None) -> None:
        place = Location(where) if isinstance(where, str) else where
        self.message = message
        self.path = place.path if place else ""
        self.line = place.line if place else 0
        self.col = place.col if place else 0
        super().__init__(f"{place}: {message}" if place else message)


class ResolveError(LrrulesError):
    """A rule file that is valid on its own but cannot be applied to this model.

    Raised for a plan whose model's parameters were replaced after resolution, and (as
    :class:`PlanProblemsError`) for asking a plan with problems, or without tensors, for groups.
    """


class PlanProblemsError(ResolveError):
    """Asked for param groups from a plan that has unmatched or conflicting parameters (or to touch
    tensors through a plan that holds none)."""


class LayerError(LrrulesError):
    """A layer strategy that cannot be applied to this model."""


class MatchError(LrrulesError):
    """A matcher that cannot decide (a module glob without modules). ``what`` is the part at fault,
    ``at`` its path below the matcher's owner (``(2,)``: the third of ``layers.patterns``)."""

    def __init__(self, message: str, what: str = "", at: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.what = what
        self.at = at


class ResumeError(LrrulesError):
    """A state dict saved under another group layout (or not by lrrules) and so not loadable."""


def dotted(loc: Sequence[str | int]) -> str:
    """``("rules", 3, "lr_mult")`` -> ``"rules[3].lr_mult"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
