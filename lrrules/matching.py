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
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

from .errors import FormulaError, MatchError
from .formula import Formula
from .language import MatchFields
from .params import ParamInfo
from .regexes import compile_regex
from .roles import NAME_ROLES, canonical

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
        # Under a tied tensor's other name, the module holding that name (lm_head.weight: a Linear).
        module, bases, _ = param.owner(param.name) if param.alias_modules else (param.module, param.bases, ())
        regex = self._regex  # type: ignore[attr-defined]
        return {} if regex.match(module) or any(regex.match(b) for b in bases) else None


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
        # Under a tied tensor's other name, the attributes of the module holding that name.
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


# --- required literals: which text every name a matcher matches must hold --------------------------
#
# A matcher's "keys" are alternatives, each a place ("prefix", "suffix" or "contains") and a literal:
# every name the matcher matches satisfies at least one of them. They are a necessary condition only,
# found from the pattern's text; the matcher itself still decides. Anything not understood yields no
# keys (the matcher is tried on every name), never a wrong key.

Key = tuple[str, str]
#: The most strings one run of literal alternatives may expand to (``(a|b)(c|d)`` is 4).
MAX_EXPANSION = 64

_UNKNOWN = None  # an atom of unknown text


def glob_keys(pattern: str) -> frozenset[Key] | None:
    """The keys of one glob: its literal start, its literal end, or a literal between two ``*``.

    >>> sorted(glob_keys("*.q_proj.weight"))
    [('suffix', '.q_proj.weight')]
    """
    special = "*?[]!"
    head = min((i for i, c in enumerate(pattern) if c in "*?["), default=len(pattern))
    if head == len(pattern):
        return frozenset({("exact", pattern)}) if pattern else None
    tail = len(pattern)
    while tail > 0 and pattern[tail - 1] not in special:
        tail -= 1
    options: list[Key] = [("prefix", pattern[:head]), ("suffix", pattern[tail:])]
    # A piece between two stars that holds no ? matches itself, somewhere in the name (only without
    # classes: `[a*b]` holds a star that is not a wildcard).
    if "[" not in pattern:
        options += [("contains", piece) for piece in pattern.split("*")[1:-1] if "?" not in piece]
    return _best([frozenset({o}) for o in options])


def _best(options: list[frozenset[Key]]) -> frozenset[Key] | None:
    """The most selective alternative set: the one whose shortest literal is longest, prefix or suffix
    before contains (a look-up, not a search)."""
    rank = {"exact": 3, "prefix": 2, "suffix": 2, "contains": 1}
    scored = [(min(len(v) for _, v in o), min(rank[k] for k, _ in o), o) for o in options if o]
    scored = [s for s in scored if s[0] > 0]
    if not scored:
        return None
    return max(scored, key=lambda s: (s[0] >= 3, s[1], s[0]))[2]


def _parse(pattern: str) -> Any:
    """The pattern parsed by the standard library's parser, or ``None`` where the two engines might
    read it differently: any flag, any syntax only ``regex`` knows (the stdlib refuses it), and any
    literal brace or bracket (``regex`` reads ``{e<=1}`` as fuzzy matching and ``[[:alpha:]]`` as a
    class, the stdlib as literal text)."""
    try:
        import re._parser as sre_parse  # type: ignore[import-not-found]
        import re._constants as sre  # type: ignore[import-not-found]
    except ImportError:  # Python < 3.11
        import sre_constants as sre  # type: ignore[no-redef]
        import sre_parse  # type: ignore[no-redef]
    try:
        with warnings.catch_warnings():  # "possible nested set": a refusal below, not news for the user
            warnings.simplefilter("ignore")
            parsed = sre_parse.parse(pattern, 0)
    except Exception:  # noqa: BLE001  any refusal means: not understood, no keys
        return None
    if parsed.state.flags & ~sre.SRE_FLAG_UNICODE:
        return None
    stack = [parsed]
    while stack:
        items = stack.pop()
        for op, arg in items:
            if op is sre.LITERAL and chr(arg) in "{}[]":
                return None
            if op is sre.SUBPATTERN:
                if arg[1] or arg[2]:  # (?i:...) and other scoped flags
                    return None
                stack.append(arg[3])
            elif op is sre.BRANCH:
                stack.extend(arg[1])
            elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", None)):
                stack.append(arg[2])
            elif op in (sre.ASSERT, sre.ASSERT_NOT):
                stack.append(arg[1])
            elif op is getattr(sre, "ATOMIC_GROUP", None):
                stack.append(arg)
    return parsed, sre


def _atoms(items: Any, sre: Any, top: bool) -> list[Any]:
    """The pattern as a flat list of atoms: a frozenset of the strings it matches exactly, ``"^"`` and
    ``"$"`` anchors (``"$"`` only at the very end), or ``None`` for anything else."""
    out: list[Any] = []
    for op, arg in items:
        if op is sre.LITERAL:
            out.append(frozenset({chr(arg)}))
        elif op is sre.SUBPATTERN:
            out.extend(_atoms(arg[3], sre, False))  # a group is concatenation: captures change nothing here
        elif op is sre.BRANCH:
            strings = _finite(arg[1], sre)
            out.append(strings)
        elif op is sre.IN and arg and all(o is sre.LITERAL for o, _ in arg):
            out.append(frozenset(chr(v) for _, v in arg))
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and arg[0] >= 1:
            out.extend(_atoms(arg[2], sre, False))  # x{1,n} is x then unknown repeats
            if arg[1] != 1:
                out.append(_UNKNOWN)
        elif op is sre.AT and arg in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING):
            out.append("^")
        elif op is sre.AT and arg in (sre.AT_END, sre.AT_END_STRING) and top:
            out.append("$" if arg is sre.AT_END else "$Z")
        else:
            out.append(_UNKNOWN)
    return out


def _finite(branches: list[Any], sre: Any) -> frozenset[str] | None:
    """The strings an alternation matches, when each branch is a few literal runs."""
    found: set[str] = set()
    for branch in branches:
        strings = {""}
        for atom in _atoms(branch, sre, False):
            if not isinstance(atom, frozenset):
                return None
            strings = {s + a for s in strings for a in atom}
            if len(strings) > MAX_EXPANSION:
                return None
        found |= strings
        if len(found) > MAX_EXPANSION:
            return None
    return frozenset(found)


_SPECIAL = frozenset("\\.^$*+?{}[]()|")
_REFUSED = frozenset("{}[]")  # what _parse refuses as literal text
_PLAIN = re.compile(r"[^\\.^$*+?{}\[\]()|]+")


def _quick_atoms(pattern: str) -> list[Any] | None:
    """:func:`_atoms` of the common patterns, read in one pass without the stdlib's parser (which
    costs most of a large rule file's compile), or ``None`` for anything else, which then takes
    the parser's way. The same atoms as that way (tests/test_matching.py compares the two): literal
    characters and escaped punctuation, ``.``, ``\\d \\w \\s`` and their opposites, ``\\b \\B``,
    groups ``(...)``, ``(?:...)``, ``(?P<name>...)``, alternations of plain literals inside a group,
    ``* + ?`` (lazy too) after an item, ``^`` first and ``$`` last. Top-level alternations, classes,
    braces, other escapes and ``(?`` forms, possessive repeats and anything malformed are left to
    the parser."""
    # Items: (kind, atoms). "lit": literal text; "rep": a repeated item; "anchor": a word boundary
    # (no repeat may follow it); "item": anything else.
    items: list[tuple[str, list[Any]]] = []
    stack: list[tuple[list[tuple[str, list[Any]]], list[Any] | None]] = []
    branches: list[Any] | None = None  # the alternatives before the last `|` of the open group
    names: set[str] = set()
    head: list[Any] = ["^"] if pattern.startswith("^") else []
    i, end = len(head), len(pattern)
    tail: list[Any] = []
    if end > i and pattern.endswith("$") and not pattern.endswith("\\$"):
        end -= 1
        tail = ["$"]
    while i < end:
        c = pattern[i]
        if c not in _SPECIAL:
            # A run of plain characters is one atom (the same keys as one atom per character, in
            # far fewer steps), but for its last character when a repeat follows: that one is its own item.
            stop = _PLAIN.match(pattern, i, end).end()  # type: ignore[union-attr]
            text = pattern[i:stop]
            if stop < end and pattern[stop] in "*+?" and len(text) > 1:
                items.append(("lit", [frozenset({text[:-1]})]))
                text = text[-1]
            items.append(("lit", [frozenset({text})]))
            i = stop
        elif c == "\\":
            e = pattern[i + 1 : i + 2]
            if e and e in "dwsDWS":  # a class of characters: unknown text
                items.append(("item", [_UNKNOWN]))
            elif e and e in "bB":  # a word boundary: no text, and nothing a repeat may follow
                items.append(("anchor", [_UNKNOWN]))
            elif not e or not e.isascii() or e.isalnum() or e in _REFUSED:
                return None
            else:
                items.append(("lit", [frozenset(e)]))
            i += 2
        elif c == ".":
            items.append(("item", [_UNKNOWN]))
            i += 1
        elif c in "*+?":
            if not items or items[-1][0] in ("rep", "anchor"):
                return None  # nothing to repeat, or a repeat of a repeat: the parser's errors
            kind, atoms = items.pop()
            items.append(("rep", [*atoms, _UNKNOWN] if c == "+" else [_UNKNOWN]))
            i += 1
            if pattern[i : i + 1] == "?" and i < end:  # lazy: the same text
                i += 1
            elif pattern[i : i + 1] == "+" and i < end:  # possessive: the parser reads it otherwise
                return None
        elif c == "(":
            if pattern.startswith("(?:", i):
                i += 3
            elif pattern.startswith("(?P<", i):
                close = pattern.find(">", i + 4)
                name = pattern[i + 4 : close] if close > 0 else ""
                if not name.isidentifier() or name in names:
                    return None
                names.add(name)
                i = close + 1
            elif pattern.startswith("(?", i):
                return None
            else:
                i += 1
            stack.append((items, branches))
            items, branches = [], None
        elif c == "|" and stack:
            branches = [*(branches or []), items]
            items = []
            i += 1
        elif c == ")" and stack:
            if branches is None:
                atoms = [a for _, item in items for a in item]
            else:
                alternatives = []
                for alternative in [*branches, items]:
                    if any(kind != "lit" for kind, _ in alternative):
                        return None
                    alternatives.append("".join(next(iter(item[0])) for _, item in alternative))
                atoms = _alternation_atoms(alternatives)
            items, branches = stack.pop()
            items.append(("item", atoms))
            i += 1
        else:  # ^ or $ inside, a top-level |, an unmatched ), a class or a brace
            return None
    if stack:
        return None
    return [*head, *(a for _, item in items for a in item), *tail]


def _alternation_atoms(alternatives: list[str]) -> list[Any]:
    """The atoms of a group of literal alternatives as the stdlib's parser shapes it: the characters
    every alternative starts with one by one, then the rests as one character set when each is one
    character, else as one branch (:func:`_finite`: unknown past ``MAX_EXPANSION`` strings)."""
    atoms: list[Any] = []
    k = 0
    while all(len(a) > k for a in alternatives) and len({a[k] for a in alternatives}) == 1:
        atoms.append(frozenset(alternatives[0][k]))
        k += 1
    rests = {a[k:] for a in alternatives}
    if all(len(a) == k + 1 for a in alternatives):
        atoms.append(frozenset(rests))
    else:
        atoms.append(frozenset(rests) if len(rests) <= MAX_EXPANSION else _UNKNOWN)
    return atoms


@functools.lru_cache(maxsize=4096)
def regex_keys(pattern: str) -> frozenset[Key] | None:
    """The keys of one regex (searched, so it may match anywhere unless anchored).

    >>> sorted(regex_keys(r"\\.(q|k)_proj\\.weight$"))
    [('suffix', '.k_proj.weight'), ('suffix', '.q_proj.weight')]
    """
    quick = _quick_atoms(pattern)
    if quick is not None:
        return _sequence_keys(quick)
    return _parsed_keys(pattern)


def _parsed_keys(pattern: str) -> frozenset[Key] | None:
    """:func:`regex_keys` through the stdlib's parser: any pattern."""
    found = _parse(pattern)
    if found is None:
        return None
    parsed, sre = found
    try:
        if len(parsed) == 1 and parsed[0][0] is sre.BRANCH:  # ^a|b: each side its own keys
            sides = [_sequence_keys(_atoms(b, sre, True)) for b in parsed[0][1][1]]
            if any(s is None for s in sides):
                return None
            return frozenset().union(*sides)  # type: ignore[arg-type]
        return _sequence_keys(_atoms(parsed, sre, True))
    except RecursionError:  # groups nested deeper than this walk goes: no keys, tried on every name
        return None


def _sequence_keys(atoms: list[Any]) -> frozenset[Key] | None:
    options: list[frozenset[Key]] = []
    run: set[str] | None = None
    start = 0
    for i, atom in enumerate([*atoms, _UNKNOWN]):
        if isinstance(atom, frozenset) and (run is None or len(run) * len(atom) <= MAX_EXPANSION):
            if run is None:
                run, start = {""}, i
            run = {s + a for s in run for a in atom}
            continue
        if run is not None:
            anchored = start == 1 and atoms[0] == "^"
            ends = i == len(atoms) - 1 and atoms[i] in ("$", "$Z")
            if anchored and ends:
                kind = "exact" if atoms[i] == "$Z" else "exact$"
            else:
                kind = "prefix" if anchored else ("suffix" if ends and atoms[i] == "$Z" else
                                                  "suffix$" if ends else "contains")
            options.append(frozenset((kind, s) for s in run))
            run = None
            if isinstance(atom, frozenset):  # the run grew too large: a new one starts here
                run, start = set(atom), i
    return _best([frozenset((k.rstrip("$"), v) for k, v in o) for o in options])


def keys(spec: Any) -> frozenset[Key] | None:
    """Alternatives, one of which every name the matcher matches satisfies; ``None`` when the
    matcher can match names of any text (module, ndim, not, a regex not understood).

    >>> sorted(keys(MatchFields.model_validate({"regex": "^blocks\\\\.", "ndim": 2})))
    [('prefix', 'blocks.')]
    """
    if isinstance(spec, str):
        return glob_keys(spec)
    if isinstance(spec, list):
        return _union([glob_keys(p) for p in spec])
    if not isinstance(spec, MatchFields):
        return None
    # Every field must match (AND): any one field's keys are necessary; the most selective serves.
    options = []
    if spec.glob is not None:
        options.append(_union([glob_keys(p) for p in spec.glob]))
    if spec.regex is not None:
        options.append(_union([regex_keys(p) for p in spec.regex]))
    if spec.all_ is not None:
        options.extend(keys(s) for s in spec.all_)
    if spec.any_ is not None:
        options.append(_union([keys(s) for s in spec.any_]))
    return _best([o for o in options if o is not None])


def _union(parts: list[frozenset[Key] | None]) -> frozenset[Key] | None:
    if not parts or any(p is None for p in parts):
        return None
    return frozenset().union(*parts)  # type: ignore[arg-type]


class _Substrings:
    """Every literal of a set that a text contains, found in one pass: one stdlib regex shaped as a
    trie of the literals inside a lookahead finds the longest literal starting at each position, and
    the literals that are prefixes of it start there too. Literal text means the same to every engine."""

    def __init__(self, literals: Sequence[str]) -> None:
        self.literals = set(literals)
        trie: dict[str, Any] = {}
        for word in self.literals:
            node = trie
            for c in word:
                node = node.setdefault(c, {})
            node[""] = {}
        # Each literal's longest proper prefix among the literals: a match of the literal is one of those too.
        self.parent: dict[str, str | None] = {}
        for word in self.literals:
            node, last = trie, None
            for n, c in enumerate(word[:-1], 1):
                node = node[c]
                if "" in node:
                    last = n
            self.parent[word] = None if last is None else word[:last]
        try:
            self.search: Callable[[str], Iterator[re.Match[str]]] | None = re.compile(
                f"(?=({self._emit(trie)}))", re.DOTALL).finditer
        except (RecursionError, re.error, OverflowError, MemoryError):
            # Literals nested thousands deep ("a", "aa", "aaa", ...) are more than the stdlib
            # compiler nests: then each literal is looked for on its own, slower, the same answer.
            self.search = None

    def _emit(self, node: dict[str, Any]) -> str:
        options = [re.escape(c) + self._emit(child) for c, child in sorted(node.items()) if c]
        if not options:
            return ""
        body = options[0] if len(options) == 1 else f"(?:{'|'.join(options)})"
        if "" in node:  # a literal ends here: longer ones are tried first (greedy), then this one
            return f"(?:{body})?"
        return body

    def found(self, text: str) -> set[str]:
        """The literals ``text`` contains."""
        if self.search is None:
            return {w for w in self.literals if w in text}
        out: set[str] = set()
        parent = self.parent
        for m in self.search(text):
            word: str | None = m.group(1)
            while word is not None and word not in out:
                out.add(word)
                word = parent[word]
        return out


class Index:
    """Which of many matchers could match a name, by the literal text each one requires.

    ``candidates(name)`` returns, in their given order, the positions of the matchers that are not
    excluded by their keys: every matcher without keys, and those with a key the name satisfies
    (starts with, ends with, equals or contains a literal). Prefixes, suffixes and whole names are
    dictionary look-ups per distinct length; contained literals are found in one pass of one
    automaton. A rule file's thousands of rules then cost a few look-ups per name, not a match each.
    The matchers still decide: the index only leaves out those that cannot match.
    """

    def __init__(self, specs: Sequence[Any]) -> None:
        self.size = len(specs)
        self.always: list[int] = []
        tables: dict[str, dict[str, list[int]]] = {"prefix": {}, "suffix": {}, "exact": {}, "contains": {}}
        for position, spec in enumerate(specs):
            found = keys(spec)
            if found is None:
                self.always.append(position)
                continue
            for kind, literal in sorted(found):
                hits = tables[kind].setdefault(literal, [])
                if not hits or hits[-1] != position:
                    hits.append(position)
        self.by_prefix, self.by_suffix = tables["prefix"], tables["suffix"]
        self.by_name, self.by_substring = tables["exact"], tables["contains"]
        self.lengths = sorted({len(p) for p in self.by_prefix})
        self.suffix_lengths = sorted({len(p) for p in self.by_suffix})
        self.substrings = _Substrings(list(self.by_substring)) if self.by_substring else None

    def candidates(self, name: str) -> list[int]:
        """The positions of the matchers that may match ``name``, in order."""
        get = self.by_prefix.get
        hits = [hit for n in self.lengths if (hit := get(name[:n])) is not None]
        if self.suffix_lengths:
            get = self.by_suffix.get
            hits += [hit for n in self.suffix_lengths if (hit := get(name[-n:])) is not None]
            if name.endswith("\n"):  # `$` also matches before a final newline
                hits += [hit for n in self.suffix_lengths if (hit := get(name[-n - 1 : -1])) is not None]
        if self.by_name:
            for text in (name, name[:-1]) if name.endswith("\n") else (name,):
                if (hit := self.by_name.get(text)) is not None:
                    hits.append(hit)
        if self.substrings is not None:
            hits += [self.by_substring[w] for w in self.substrings.found(name)]
        if not hits:
            return self.always
        if len(hits) == 1 and not self.always:
            return hits[0]
        merged = set(self.always)
        for hit in hits:
            merged.update(hit)
        return sorted(merged)
