"""The regex dialect of rule files: the ``regex`` package, one cache of compiled patterns, and what
a pattern may cost, judged from its text before it is compiled: its size (``((a{1000}){1000}){1000}``
unrolled would fill the memory) and its shape (docs/language.md, "What a regex may cost").

>>> check_regex(r"^blocks\\.(?P<i>\\d+)").groupindex
{'i': 1}
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import regex

from .errors import RegexError

#: The most a regex may expand to when its counted repeats are written out.
MAX_REGEX_SIZE = 100_000
#: The most all the regexes of one rule set may grow by together (100,000 units: about 14 MB).
MAX_REGEX_GROWTH = 200_000
#: The most repeats and alternatives that may trade characters with their neighbours.
MAX_FREE_REPEATS = 2
_GROWTH: ContextVar[list[int] | None] = ContextVar("lrrules_regex_growth", default=None)
_REPEAT = re.compile(r"(?:([*+?])|\{(\d*)(,?)(\d*)\})[?+]?")
_SKIP = re.compile(r"[ \t\n\r\f\v]+|#[^\n]*\n?")  # under the verbose flag
#: Inline flags: ``(?ix)`` (to the end of the pattern, or of the group in version 1) or ``(?i-x:...)``.
_FLAGS = re.compile(r"\(\?((?:[aLbefimprsuwx]|V[01])*)(?:-((?:[aLbefimprsuwx]|V[01])+))?([:)])")
#: References and recursion, one unit each: (?P=name), (?P>name), (?&name), (?R), (?1), (?+1), (?-1).
_REFERENCE = re.compile(r"\(\?(?:P[=>][^)]*|&[^)]*|R|[-+]?\d+)\)")
_OPENING = re.compile(r"\(\?(?:P?<(?![=!])[^>]*>|'[^']*'|<[=!]|[:>|=!])")
#: One unit: an escape (\\x41, \\p{Lu}, \\g<name>, a back reference), a class ([]a], [[:alpha:]]), a character.
_UNIT = re.compile(r"\\(?:[xNpPg]\{[^}]*\}?|g<[^>]*>?|x.{0,2}|u.{0,4}|U.{0,8}|[pP].?|\d{1,3}|.?)"
                   r"|\[\^?\]?(?:\[([:=.]).*?\1\]|\\.?|[^\]])*\]?|.", re.S)
_FUZZY = re.compile(r"\{[\d\s<=+,]*[eids][\deids\s<=+,]*\}")
_ANY = "(?s:.)"  # what an item of unknown text (a back reference) may match
_HUGE = 10**15  # sizes beyond are all 'too big': the count saturates instead of growing without end


@functools.lru_cache(maxsize=4096)
def compile_regex(pattern: str) -> regex.Pattern[str]:
    """The compiled form of a rule file's regex (cached)."""
    return regex.compile(pattern)


def _tokens(pattern: str, verbose: bool, flags: set[str]) -> Iterator[tuple[str, int, int, Any]]:
    """``(kind, start, end, detail)`` for each piece of ``pattern``: ``rep`` (detail: the least and
    most count, None when open), ``bar``, ``open`` (detail: whether it captures), ``close``, ``item``
    (one unit); the inline flags it turns on go into ``flags``."""
    stack, i, n = [verbose], 0, len(pattern)
    while i < n:
        c, start = pattern[i], i
        if stack[-1] and (skip := _SKIP.match(pattern, i)):
            i = skip.end()
        elif (rep := _REPEAT.match(pattern, i)) and (rep[1] or rep[2] or rep[4]):
            short, low, comma, high = rep.groups()
            least = int(short == "+") if short else _number(low or "0")
            most = (1 if short == "?" else None) if short else least if not comma else _number(high) if high else None
            i = rep.end()  # a lazy or possessive repeat is the same repeat
            yield "rep", start, i, (least, most)
        elif c in "|)":
            i += 1
            if c == "|" or len(stack) > 1:  # an unbalanced ')': the compiler refuses it
                stack.pop() if c == ")" else None
                yield ("bar" if c == "|" else "close"), start, i, None
        elif c != "(" or _REFERENCE.match(pattern, i):  # _UNIT matches every character
            i = (_REFERENCE if c == "(" else _UNIT).match(pattern, i).end()  # type: ignore[union-attr]
            yield "item", start, i, None
        elif pattern.startswith("(?#", i):  # a comment, up to the first ')'
            i = pattern.find(")", i) + 1 or n
        elif found := _FLAGS.match(pattern, i):
            on, off = set(found.group(1)), set(found.group(2) or "")
            flags |= on
            i = found.end()
            if found.group(3) == ")":  # to the end of the group (version 1) or pattern (version 0)
                stack[-1] = stack[-1] or "x" in on
            else:
                stack.append((stack[-1] or "x" in on) and "x" not in off)
                yield "open", start, i, False
        else:  # a group; a conditional's condition, (?(1)yes|no), is read as a group inside it
            found, conditional = _OPENING.match(pattern, i), pattern.startswith("(?(", i)
            i = i + 2 if conditional else found.end() if found else i + 1 + (pattern[i + 1 : i + 2] == "?")
            stack.append(stack[-1])
            yield "open", start, i, not conditional and (found is None or found.group().startswith(("(?P<", "(?<", "(?'")))


def _number(digits: str) -> int:
    return int(digits) if len(digits) <= 15 else _HUGE


@dataclass
class _Part:
    """One item, as its size and the repeats around it need it."""

    at: int
    size: int = 1
    width: int | None = 1  # the characters every match takes; None where it varies
    lit: str | None = None  # the character, for a literal
    first: str | None = None  # the one-character item every match starts with
    firsts: frozenset[str] | None = None  # literals one of which starts every match (none: an end)
    free: int = 0  # the repeats and alternatives inside that trade characters
    repeat: bool = False  # a repeat of varying count: what follows decides whether it trades
    optional: bool = False
    stop: bool = False  # a group ending in a literal nothing else in it matches
    chars: list[str] = field(default_factory=list)  # the one-character items inside
    waiting: list[_Part] = field(default_factory=list)  # repeats at its end, for what follows to settle


@dataclass
class _Group:
    at: int
    captures: bool
    look: bool  # a lookaround: nothing follows its end within it
    free_before: int
    parts: list[_Part] = field(default_factory=list)  # of the branch being read
    branches: list[list[_Part]] = field(default_factory=list)
    waiting: list[_Part] = field(default_factory=list)  # repeats of this branch waiting for a follower
    ended: list[_Part] = field(default_factory=list)  # repeats at the end of earlier branches


@functools.lru_cache(maxsize=4096)
def _matches(item: str, char: str) -> bool:
    """Whether the one-character item can match ``char``, under any case and dot flag."""
    try:
        return regex.fullmatch(item, char, flags=regex.I | regex.S) is not None
    except regex.error:
        return True


def _item(pattern: str, at: int, end: int, flags: set[str]) -> _Part | str:
    """The part of one unit, or why it is refused."""
    text = pattern[at:end]
    if text in ("^", "\\A", "\\b", "\\B", "\\G", "\\K", "\\m", "\\M", "$", "\\Z"):
        return _Part(at, width=0, firsts=frozenset() if text in ("$", "\\Z") else None)
    if text == "\\X" or text.startswith(("\\g", "\\L", "(?P=")) or text[:1] == "\\" and text[1:2] in "123456789":
        return _Part(at, width=None, chars=[_ANY])
    if text.startswith("(?"):
        return "recursion ((?R), (?1), (?&name)) may run without end; write the pattern out"
    if text == "{" and _FUZZY.match(pattern, at):
        return "fuzzy matching ({e<=1}) costs a power of the name's length; list the spellings with | instead"
    c = text[-1]
    plain = text != "." and (len(text) == 1 or len(text) == 2 and text[0] == "\\" and not c.isalnum())
    lit = c if plain and c.isascii() and not (c.isalpha() and "f" in flags) else None
    return _Part(at, lit=lit, first=text, firsts=None if lit is None else frozenset(lit), chars=[text])


def _settle(group: _Group, part: _Part, free: list[int]) -> None:
    """``part`` follows the group's waiting repeats. One followed by a literal it cannot match, or by
    the end, gives characters back one at a time, each refused at once; any other trades them."""
    for repeat in group.waiting:
        if part.optional or part.firsts is None or part.firsts and (
                repeat.first is None or any(_matches(repeat.first, c) for c in part.firsts)):
            free.append(repeat.at)
    group.waiting = part.waiting + ([part] if part.repeat else [])
    group.parts.append(part)


def _close(group: _Group, free: list[int]) -> _Part:
    branches = [*group.branches, group.parts]
    widths = {None if any(p.width is None for p in b) else sum(p.width or 0 for p in b) for b in branches}
    heads = [b[0] if b and not b[0].optional else None for b in branches]
    firsts = [h.firsts if h else None for h in heads]
    if len(branches) > 1 and not (all(f is not None and len(f) == 1 for f in firsts) and len(
            {next(iter(f)).casefold()[:1] for f in firsts if f}) == len(branches)):
        free.append(group.at)  # alternatives that can start alike: each may be tried on the same text
    chars, last = [c for b in branches for p in b for c in p.chars], group.parts[-1] if group.parts else None
    stop = len(branches) == 1 and last is not None and last.lit is not None and \
        not any(_matches(c, last.lit) for c in chars[:-1])
    return _Part(group.at, min(sum(p.size for b in branches for p in b) + len(branches) - 1 + group.captures, _HUGE),
                 0 if group.look else widths.pop() if len(widths) == 1 else None,
                 first=heads[0].first if len(branches) == 1 and heads[0] else None, stop=stop, chars=chars,
                 firsts=None if group.look or None in firsts else frozenset().union(*firsts),  # type: ignore[arg-type]
                 free=len(free) - group.free_before, waiting=[] if group.look else group.waiting + group.ended)


def _read(pattern: str, verbose: bool) -> tuple[int, set[str], tuple[str, int] | None]:
    """The size of ``pattern`` read with or without the verbose flag, the inline flags it turns on,
    and why and where its shape is refused (``None`` where it is not)."""
    flags: set[str] = set()
    free: list[int] = []
    groups, last, refused = [_Group(0, False, False, 0)], None, None
    for kind, at, end, detail in _tokens(pattern, verbose, flags):
        top = groups[-1]
        if kind == "rep":
            (least, most), last = detail, last or _Part(at, 0, 0)
            if (most is None or most > 1) and (last.free or last.width is None and not last.stop):
                refused = refused or ("a repeat of what can match one text in more than one way: a name that "
                                      "almost matches is tried in exponentially many ways; repeat single characters "
                                      "([\\w.]*), or end the group with a character nothing else in it matches "
                                      "((?:[a-z_]+\\.)*)", last.at)
            last.size = min(last.size * max(least, 1) if most == least else last.size * (least + 1) + 1, _HUGE)
            if least != most:
                last.width, last.optional, last.repeat, last.stop = None, least == 0, True, False
            elif last.width is not None:
                last.width *= least
            last.firsts, last.lit = last.firsts if least else None, last.lit if least == most == 1 else None
            continue
        if last is not None:
            _settle(top, last, free)
        last = None
        if kind == "item":
            found = _item(pattern, at, end, flags)
            last, refused = (found, refused) if isinstance(found, _Part) else (_Part(at), refused or (found, at))
        elif kind == "open":
            groups.append(_Group(at, detail, pattern.startswith(("(?=", "(?!", "(?<=", "(?<!"), at), len(free)))
        elif kind == "bar":
            top.branches.append(top.parts)
            top.ended, top.waiting, top.parts = top.ended + top.waiting, [], []
        else:
            last = _close(groups.pop(), free)
    if last is not None:
        _settle(groups[-1], last, free)  # what waits at the very end gives nothing back: the match is made
    if len(free) > MAX_FREE_REPEATS:
        refused = refused or (f"{len(free)} repeats or alternatives that can trade characters with what follows "
                              f"them (at most {MAX_FREE_REPEATS}): a name that almost matches costs a power of its "
                              "length; follow a repeat by a character it cannot match ([^.]*\\., \\d+\\.)",
                              free[MAX_FREE_REPEATS])
    size = sum(p.size for g in groups for b in (*g.branches, g.parts) for p in b) + sum(len(g.branches) for g in groups)
    return min(size, _HUGE), flags, refused


def _judge(pattern: str) -> tuple[int, tuple[str, int] | None]:
    # In version 0 (the default) a verbose flag anywhere applies to the whole pattern: regex starts
    # again with it. Both readings are judged: the larger size, the first refusal.
    size, flags, refused = _read(pattern, False)
    verbose, _, also = _read(pattern, True) if "x" in flags else (0, flags, None)
    return max(size, verbose), refused or also


def regex_size(pattern: str) -> int:
    """How many units ``pattern`` compiles into, the way ``regex`` unrolls its counted repeats
    (``{m}``: the body ``m`` times; ``{m,n}``: ``m`` times plus the loop; a capture: 1 more).

    >>> regex_size("a{3}(bc){2}"), regex_size("(?:x|yz){1,100}")
    (9, 9)
    """
    return _judge(pattern)[0]


@contextmanager
def growth_budget() -> Iterator[None]:
    """Count every regex :func:`check_regex` sees inside against one :data:`MAX_REGEX_GROWTH`."""
    token = _GROWTH.set([0])
    try:
        yield
    finally:
        _GROWTH.reset(token)


def check_regex(pattern: str) -> regex.Pattern[str]:
    """``pattern`` compiled, after judging its size (alone, and with the others of the same
    :func:`growth_budget`) and its shape; :class:`~lrrules.errors.RegexError` with the position."""
    size, refused = _judge(pattern)
    if size > MAX_REGEX_SIZE:
        raise RegexError(f"the regex expands to more than {MAX_REGEX_SIZE} units when its counted repeats are "
                         "written out; use smaller counts or a shorter regex", pattern)
    growth = _GROWTH.get()
    if growth is not None:
        growth[0] += max(size - len(pattern), 0)
        if growth[0] > MAX_REGEX_GROWTH:
            raise RegexError(f"the file's regexes together expand by more than {MAX_REGEX_GROWTH} units when their "
                             "counted repeats are written out; use smaller counts", pattern)
    try:
        compiled = compile_regex(pattern)
    except regex.error as exc:
        raise RegexError(f"invalid regex: {str(exc).split(' at position')[0]}", pattern, exc.pos) from None
    if refused is not None:
        raise RegexError(refused[0], pattern, refused[1])
    return compiled
