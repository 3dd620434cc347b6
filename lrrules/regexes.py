"""The regex dialect of rule files: the ``regex`` package, a bound on what a pattern may cost, and
one cache of compiled patterns.

Two things are checked before a pattern is compiled, both from its text alone. :func:`regex_size`
counts what the compiler writes out for its counted repeats, so ``((a{1000}){1000}){1000}`` is
refused instead of filling the memory. :func:`regex_shape` refuses the shapes whose backtracking
explodes on a name that almost matches (docs/language.md#regex-cost says why each is safe or not).

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
#: The most all the regexes of one rule set may grow by together (each 100,000 units costs the
#: compiler about 14 MB): many regexes just under the limit above would add up to gigabytes.
MAX_REGEX_GROWTH = 200_000
#: The most repeats (and alternatives) that may trade characters with what follows them: a name of
#: length n that almost matches costs about n ** (this + 1) steps.
MAX_FREE_REPEATS = 2
_GROWTH: ContextVar[list[int] | None] = ContextVar("lrrules_regex_growth", default=None)
_COUNT = re.compile(r"\{(\d*)(?:,(\d*))?\}")
#: Inline flags: ``(?ix)`` (to the end of the pattern, or of the group in version 1) or ``(?i-x:...)``.
_FLAGS = re.compile(r"\(\?((?:[aLbefimprsuwx]|V[01])*)(?:-((?:[aLbefimprsuwx]|V[01])+))?([:)])")
#: References and recursion, one unit each: (?P=name), (?P>name), (?&name), (?R), (?1), (?+1), (?-1).
_REFERENCE = re.compile(r"\(\?(?:P[=>][^)]*|&[^)]*|R|[-+]?\d+)\)")
#: Group openings that are no text to match: their length is syntax.
_OPENING = re.compile(r"\(\?(?:P?<(?![=!])[^>]*>|'[^']*'|<[=!]|[:>|=!])")
_FUZZY = re.compile(r"\{[\d\s<=+,]*[eids][\deids\s<=+,]*\}")
#: Sizes beyond this are all 'too big': the count saturates here instead of growing without end.
_HUGE = 10**15


@functools.lru_cache(maxsize=4096)
def compile_regex(pattern: str) -> regex.Pattern[str]:
    """The compiled form of a rule file's regex.

    >>> compile_regex("a+") is compile_regex("a+")
    True
    """
    return regex.compile(pattern)


def _tokens(pattern: str, verbose: bool, flags: set[str]) -> Iterator[tuple[str, int, int, Any]]:
    """``(kind, start, end, detail)`` for each piece of ``pattern``: ``rep`` (detail: least and most
    count, most ``None`` when open), ``bar``, ``open`` (detail: whether it captures), ``close``,
    ``item`` (one unit). Spaces and ``#`` comments under the verbose flag are no piece; the inline
    flags turned on go into ``flags``."""
    stack, i, n = [verbose], 0, len(pattern)
    while i < n:
        c, start = pattern[i], i
        if stack[-1] and c in " \t\n\r\f\v":
            i += 1
        elif stack[-1] and c == "#":
            end = pattern.find("\n", i)
            i = n if end < 0 else end + 1
        elif c in "*+?" or c == "{" and (counted := _COUNT.match(pattern, i)) and any(counted.groups()):
            if c == "{":
                low, comma, high = counted.group()[1:-1].partition(",")  # type: ignore[union-attr]
                least = _number(low or "0")
                most = least if not comma else _number(high) if high else None
                i = counted.end()  # type: ignore[union-attr]
            else:
                (least, most), i = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c], i + 1
            i += pattern[i : i + 1] in ("?", "+")  # lazy or possessive: the same repeat
            yield "rep", start, i, (least, most)
        elif c in "|)":
            i += 1
            if c == "|" or len(stack) > 1:  # an unbalanced ')': the compiler refuses it
                stack.pop() if c == ")" else None
                yield ("bar" if c == "|" else "close"), start, i, None
        elif c != "(":
            i = _item_end(pattern, i)
            yield "item", start, i, None
        elif pattern.startswith("(?#", i):  # a comment, up to the first ')'
            end = pattern.find(")", i)
            i = n if end < 0 else end + 1
        elif found := _FLAGS.match(pattern, i):
            on, off = set(found.group(1)), set(found.group(2) or "")
            flags |= on
            i = found.end()
            if found.group(3) == ")":  # to the end of the group (version 1) or pattern (version 0)
                stack[-1] = stack[-1] or "x" in on
            else:
                stack.append((stack[-1] or "x" in on) and "x" not in off)
                yield "open", start, i, False
        elif found := _REFERENCE.match(pattern, i):
            i = found.end()
            yield "item", start, i, None
        else:  # a group; a conditional's condition, (?(1)yes|no), is read as a group inside it
            found, conditional = _OPENING.match(pattern, i), pattern.startswith("(?(", i)
            i = i + 2 if conditional else found.end() if found else i + 1 + (pattern[i + 1 : i + 2] == "?")
            stack.append(stack[-1])
            yield "open", start, i, not conditional and (found is None or found.group().startswith(("(?P<", "(?<", "(?'")))


def _number(digits: str) -> int:
    return int(digits) if len(digits) <= 15 else _HUGE


def _item_end(pattern: str, i: int) -> int:
    """Where the one-unit item at ``i`` ends: a character, an escape, or a character class."""
    c, kind = pattern[i], pattern[i + 1 : i + 2]
    if c == "\\":
        if pattern[i + 2 : i + 3] == "{" and kind in ("x", "N", "p", "P", "g") or pattern[i + 1 : i + 3] == "g<":
            end = pattern.find("}" if pattern[i + 2] == "{" else ">", i)  # \x{263a}, \N{DASH}, \p{Lu}, \g<name>
            return len(pattern) if end < 0 else end + 1
        width = {"x": 2, "u": 4, "U": 8, "p": 1, "P": 1}.get(kind)
        if width is not None:
            return min(i + 2 + width, len(pattern))
        if kind.isdigit():  # a back reference or an octal escape
            return next((j for j in range(i + 1, min(i + 4, len(pattern))) if not pattern[j].isdigit()),
                        min(i + 4, len(pattern)))
        return i + 2
    if c != "[":
        return i + 1
    j = i + 1 + (kind == "^")
    j += pattern[j : j + 1] == "]"  # a ']' first in a class is the character
    while j < len(pattern) and pattern[j] != "]":
        if pattern[j] == "\\":
            j += 2
        elif pattern.startswith(("[:", "[=", "[."), j):  # [:alpha:] inside a class
            end = pattern.find(pattern[j + 1] + "]", j + 2)
            j = len(pattern) if end < 0 else end + 2
        else:
            j += 1
    return j + 1


def regex_size(pattern: str) -> int:
    """How many units ``pattern`` compiles into, counted before compiling it, the way ``regex``
    unrolls it: a character, class, escape or anchor is 1; a sequence and the branches of an
    alternation add up (each ``|`` 1 more); a counted repeat ``{m}`` writes its body out ``m`` times
    (once when ``m`` is 0), ``{m,n}`` and ``{m,}`` ``m`` times plus the loop over the rest (the body once
    more, and 1), ``?`` ``*`` ``+`` like ``{0,1}`` ``{0,}`` ``{1,}``; a capture group is 1 more than its body.

    >>> regex_size("a{3}(bc){2}"), regex_size("(?:x|yz){1,100}")
    (9, 9)
    """
    flags: set[str] = set()
    size = _size(_tokens(pattern, False, flags))
    # In version 0 (the default) a verbose flag anywhere applies to the whole pattern: regex
    # starts again with it. Both readings are counted and the larger kept.
    return max(size, _size(_tokens(pattern, True, set()))) if "x" in flags else size


def _size(tokens: Iterator[tuple[str, int, int, Any]]) -> int:
    # One frame per open group: [size so far, size of its last item (what a repeat repeats), captures].
    frames: list[list[Any]] = [[0, 0, False]]
    for kind, _, _, detail in tokens:
        top = frames[-1]
        if kind == "rep":
            (least, most), body = detail, top[1]
            grown = min(body * max(least, 1) if most == least else body * (least + 1) + 1, _HUGE)
            top[0], top[1] = top[0] + grown - body, grown
        elif kind == "bar":
            top[0], top[1] = top[0] + 1, 0
        elif kind == "open":
            frames.append([0, 0, detail])
        else:
            item = 1 if kind == "item" else min(frames.pop()[0] + top[2], _HUGE)
            frames[-1][0], frames[-1][1] = min(frames[-1][0] + item, _HUGE), item
    return min(sum(frame[0] for frame in frames), _HUGE)


@dataclass
class _Part:
    """What a repeat of one item, and the group around it, need to know of it."""

    at: int
    width: int | None = 1  # the characters every match takes, None where it varies
    char: str | None = None  # a one-character item's text (a literal, escape, class or dot)
    lit: str | None = None  # its character, where it matches only that one
    first: str | None = None  # the one-character item every match starts with
    firsts: frozenset[str] | None = None  # the literal characters one of which starts every match
    free: int = 0  # the repeats and alternatives inside it that trade characters
    optional: bool = False
    repeat: bool = False  # a repeat of a varying count: what follows it decides whether it trades
    end: bool = False  # $ or \Z
    stop: bool = False  # a group that ends in a literal nothing else in it matches
    chars: list[str] = field(default_factory=list)  # the one-character items inside it
    opaque: bool = False  # it holds text no class describes (a back reference)
    waiting: list[_Part] = field(default_factory=list)  # repeats at its end: what follows it settles them


@dataclass
class _Group:
    at: int
    look: bool  # a lookaround: nothing of the group's own follows its end
    free_before: int
    parts: list[_Part] = field(default_factory=list)  # of the branch being read
    branches: list[list[_Part]] = field(default_factory=list)
    waiting: list[_Part] = field(default_factory=list)  # repeats of this branch waiting for their follower
    ended: list[_Part] = field(default_factory=list)  # repeats at the end of earlier branches


@functools.lru_cache(maxsize=4096)
def _matches(item: str, char: str) -> bool:
    """Whether the one-character item can match ``char`` (under any case and dot flag)."""
    try:
        return regex.fullmatch(item, char, flags=regex.I | regex.S) is not None
    except regex.error:
        return True


def _item(pattern: str, at: int, end: int, flags: set[str]) -> _Part:
    text = pattern[at:end]
    if text in ("^", "\\A", "\\b", "\\B", "\\G", "\\K", "\\m", "\\M", "$", "\\Z"):
        return _Part(at, width=0, end=text in ("$", "\\Z"))
    if text == "\\X" or text.startswith(("\\g", "\\L", "(?P=")) or text[:1] == "\\" and text[1:2] in "123456789":
        return _Part(at, width=None, opaque=True)
    if text.startswith("(?"):
        raise RegexError("recursion ((?R), (?1), (?&name)) may run without end; write the pattern out", pattern, at)
    if text == "{" and _FUZZY.match(pattern, at):
        raise RegexError("fuzzy matching ({e<=1}) costs a power of the name's length; list the spellings "
                         "with | instead", pattern, at)
    c = text[-1]
    plain = text != "." and (len(text) == 1 or len(text) == 2 and text[0] == "\\" and not c.isalnum())
    lit = c if plain and c.isascii() and not (c.isalpha() and "f" in flags) else None
    return _Part(at, char=text, lit=lit, first=text, firsts=None if lit is None else frozenset(lit), chars=[text])


def _settle(group: _Group, part: _Part, free: list[int]) -> None:
    """``part`` follows the group's waiting repeats: a repeat followed by a literal it cannot match
    (or by the end) gives back characters one at a time, each refused at once; any other trades."""
    for repeat in group.waiting:
        pinned = part.end or not part.optional and part.firsts is not None and repeat.first is not None and \
            not any(_matches(repeat.first, c) for c in part.firsts)
        if not pinned:
            free.append(repeat.at)
    group.waiting = part.waiting + ([part] if part.repeat else [])
    group.parts.append(part)


def _close(group: _Group, free: list[int]) -> _Part:
    branches = [*group.branches, group.parts]
    widths = {None if any(p.width is None for p in b) else sum(p.width or 0 for p in b) for b in branches}
    heads = [b[0] if b and not b[0].optional else None for b in branches]
    firsts = [h.firsts if h else None for h in heads]
    if len(branches) > 1 and not (all(f is not None and len(f) == 1 for f in firsts)
                                  and len({next(iter(f)).casefold()[:1] for f in firsts if f}) == len(branches)):
        free.append(group.at)  # alternatives that can start alike: each one may be tried on the same text
    chars = [c for b in branches for p in b for c in p.chars]
    last = group.parts[-1] if group.parts else None
    stop = len(branches) == 1 and last is not None and last.lit is not None and not any(p.opaque for p in group.parts) \
        and not any(_matches(c, last.lit) for c in chars[:-1])
    return _Part(group.at, width=0 if group.look else widths.pop() if len(widths) == 1 else None,
                 first=heads[0].first if len(branches) == 1 and heads[0] else None, stop=stop, chars=chars,
                 firsts=None if group.look or None in firsts else frozenset().union(*firsts),  # type: ignore[arg-type]
                 free=len(free) - group.free_before, opaque=any(p.opaque for b in branches for p in b),
                 waiting=[] if group.look else group.waiting + group.ended)


def check_shape(pattern: str) -> None:
    """Refuse (:class:`~lrrules.errors.RegexError`) a compiled ``pattern`` on which a name that almost
    matches may cost more than a small power of its length (docs/language.md#what-a-regex-may-cost).

    >>> check_shape(r"^(?:[a-z_]+\\.)*weight$")
    >>> check_shape("(a+)+$")
    Traceback (most recent call last):
    lrrules.errors.RegexError: a repeat of what can match one text in more than one way: a name that almost matches is tried in exponentially many ways; repeat single characters ([\\w.]*), or end the group with a character nothing else in it matches ((?:[a-z_]+\\.)*)
        (a+)+$
        ^
    """
    flags: set[str] = set()
    tokens = list(_tokens(pattern, False, flags))
    free: list[int] = []
    groups, last = [_Group(0, False, 0)], None
    for kind, at, end, detail in tokens:
        top = groups[-1]
        if kind == "rep":
            least, most = detail
            if last is None:
                continue
            if (most is None or most > 1) and (last.free or last.width is None and not last.stop):
                raise RegexError("a repeat of what can match one text in more than one way: a name that almost "
                                 "matches is tried in exponentially many ways; repeat single characters ([\\w.]*), "
                                 "or end the group with a character nothing else in it matches ((?:[a-z_]+\\.)*)",
                                 pattern, last.at)
            if least != most:
                last.width, last.optional, last.repeat, last.lit, last.stop = None, least == 0, True, None, False
                last.firsts = None if least == 0 else last.firsts
            elif last.width is not None:
                last.width, last.lit = last.width * least, None if least != 1 else last.lit
            continue
        if last is not None:
            _settle(top, last, free)
        last = None
        if kind == "item":
            last = _item(pattern, at, end, flags)
        elif kind == "open":
            groups.append(_Group(at, pattern.startswith(("(?=", "(?!", "(?<=", "(?<!"), at), len(free)))
        elif kind == "bar":
            top.ended, top.waiting = top.ended + top.waiting, []
            top.branches.append(top.parts)
            top.parts = []
        elif len(groups) > 1:
            last = _close(groups.pop(), free)
    if last is not None:
        _settle(groups[-1], last, free)  # what waits at the very end gives back nothing: the match is made
    if len(free) > MAX_FREE_REPEATS:
        raise RegexError(f"{len(free)} repeats or alternatives that can trade characters with what follows them "
                         f"(at most {MAX_FREE_REPEATS}): a name that almost matches costs a power of its length; "
                         "follow a repeat by a character it cannot match ([^.]*\\., \\d+\\.)",
                         pattern, free[MAX_FREE_REPEATS])


@contextmanager
def growth_budget() -> Iterator[None]:
    """Count the growth of every regex :func:`check_regex` sees inside against one
    :data:`MAX_REGEX_GROWTH` (the validation of one rule set opens one)."""
    token = _GROWTH.set([0])
    try:
        yield
    finally:
        _GROWTH.reset(token)


def check_regex(pattern: str) -> regex.Pattern[str]:
    """``pattern`` compiled, after checking what it unrolls into (alone, and with the other regexes
    of the same :func:`growth_budget`) and what it may cost; :class:`~lrrules.errors.RegexError`
    with the position in the pattern.

    >>> check_regex("a(b")
    Traceback (most recent call last):
    lrrules.errors.RegexError: invalid regex: missing )
        a(b
           ^
    """
    size = regex_size(pattern)
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
    check_shape(pattern)
    return compiled
