"""The regex dialect of rule files: the ``regex`` package, the limits on what a regex may unroll
into, and one cache of compiled patterns.

A rule file's regexes are compiled with ``regex`` rather than ``re`` because it stops a match at a
time limit (:mod:`lrrules.matching` sets it). Before a pattern is compiled, :func:`regex_size`
counts what the compiler would write out for its counted repeats, so that a short text such as
``((a{1000}){1000}){1000}`` is refused instead of filling the machine's memory.

>>> check_regex(r"^blocks\\.(?P<i>\\d+)").groupindex
{'i': 1}
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import regex

from .errors import RegexError

#: The most a regex may expand to when its counted repeats are written out: ``((a{1000}){1000}){1000}``
#: is a short text that the compiler unrolls into more memory than the machine has.
MAX_REGEX_SIZE = 100_000
#: The most all the regexes of one rule set may grow by together when their counted repeats are
#: written out (each 100,000 units costs the compiler about 14 MB): many regexes just under the
#: limit above would otherwise add up to gigabytes.
MAX_REGEX_GROWTH = 200_000
#: How much the regexes of the rule set being validated have grown so far (a one-item list), inside
#: :func:`growth_budget`.
_GROWTH: ContextVar[list[int] | None] = ContextVar("lrrules_regex_growth", default=None)
_COUNT = re.compile(r"\{(\d*)(?:,(\d*))?\}")
#: Inline flags: ``(?ix)`` (to the end of the pattern, or of the group in version 1) or ``(?i-x:...)``.
_FLAGS = re.compile(r"\(\?((?:[aLbefimprsuwx]|V[01])*)(?:-((?:[aLbefimprsuwx]|V[01])+))?([:)])")
#: References and recursion, one unit each: (?P=name), (?P>name), (?&name), (?R), (?1), (?+1), (?-1).
_REFERENCE = re.compile(r"\(\?(?:P[=>][^)]*|&[^)]*|R|[-+]?\d+)\)")
#: Group openings that are no text to match: their length is syntax.
_OPENING = re.compile(r"\(\?(?:P?<(?![=!])[^>]*>|'[^']*'|<[=!]|[:>|=!])")
#: Sizes beyond this are all 'too big': the count saturates here instead of growing without end.
_HUGE = 10**15


@functools.lru_cache(maxsize=4096)
def compile_regex(pattern: str) -> regex.Pattern[str]:
    """The compiled form of a rule file's regex (the ``regex`` package, which supports time limits).

    >>> compile_regex("a+") is compile_regex("a+")
    True
    """
    return regex.compile(pattern)


def regex_size(pattern: str) -> int:
    """How many units ``pattern`` compiles into, counted before compiling it, the way ``regex``
    unrolls it: a character, class, escape or anchor is 1; a sequence and the branches of an
    alternation add up (each ``|`` 1 more); a counted repeat ``{m}`` writes its body out ``m`` times
    (once when ``m`` is 0), ``{m,n}`` and ``{m,}`` ``m`` times plus the loop over the rest (the body once
    more, and 1), ``?`` ``*`` ``+`` like ``{0,1}`` ``{0,}`` ``{1,}``; a capture group is 1 more than its
    body. Spaces and ``#`` comments under the verbose flag count nothing.

    >>> regex_size("a{3}(bc){2}"), regex_size("(?:x|yz){1,100}")
    (9, 9)
    """
    size, flags = _count(pattern, verbose=False)
    # In version 0 (the default) a verbose flag anywhere applies to the whole pattern: regex
    # starts again with it. Both readings are counted and the larger kept.
    if "x" in flags:
        size = max(size, _count(pattern, verbose=True)[0])
    return size


def _count(pattern: str, verbose: bool) -> tuple[int, set[str]]:
    """The size of ``pattern`` read with or without the verbose flag, and the inline flags it turns on."""
    flags: set[str] = set()
    # One frame per open group: [size so far, size of its last item (what a quantifier repeats),
    # verbose inside it, whether it captures].
    frames: list[list[Any]] = [[0, 0, verbose, False]]
    i, n = 0, len(pattern)
    while i < n:
        top = frames[-1]
        c = pattern[i]
        if top[2] and c in " \t\n\r\f\v":  # verbose: no item, so a quantifier after it repeats the one before
            i += 1
            continue
        if top[2] and c == "#":
            end = pattern.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if c in "*+?" or c == "{" and (counted := _COUNT.match(pattern, i)) and any(counted.groups()):
            if c == "{":
                low, _, high = counted.group()[1:-1].partition(",")  # type: ignore[union-attr]
                least = _number(low or "0")
                fixed = "," not in counted.group()  # type: ignore[union-attr]
                most = least if fixed else _number(high) if high else None
                i = counted.end()  # type: ignore[union-attr]
            else:
                least, most = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
                i += 1
            body = top[1]
            grown = body * max(least, 1) if most == least else body * (least + 1) + 1
            top[0] += min(grown, _HUGE) - body
            top[1] = min(grown, _HUGE)
            if pattern[i : i + 1] in ("?", "+"):  # lazy or possessive: the same repeat
                i += 1
            continue
        if c == "|":
            top[0] += 1
            top[1] = 0
            i += 1
            continue
        if c == ")":
            if len(frames) == 1:  # unbalanced: the compiler refuses it
                i += 1
                continue
            inner = frames.pop()
            item = min(inner[0] + inner[3], _HUGE)
            i += 1
        elif c == "(":
            if pattern.startswith("(?#", i):  # a comment, up to the first ')'
                end = pattern.find(")", i)
                i = n if end < 0 else end + 1
                continue
            if found := _FLAGS.match(pattern, i):
                on, off = set(found.group(1)), set(found.group(2) or "")
                flags |= on
                i = found.end()
                if found.group(3) == ")":  # to the end of the group (version 1) or pattern (version 0)
                    top[2] = top[2] or "x" in on
                    continue
                frames.append([0, 0, (top[2] or "x" in on) and "x" not in off, False])
                continue
            if found := _REFERENCE.match(pattern, i):
                i, item = found.end(), 1
            elif pattern.startswith("(?(", i):
                # A conditional, (?(1)yes|no) or (?(?=x)yes|no): its condition is read as a group
                # inside it, so that the parentheses stay paired.
                i += 2
                frames.append([0, 0, top[2], False])
                continue
            else:
                found = _OPENING.match(pattern, i)
                captures = found is None or found.group().startswith(("(?P<", "(?<", "(?'"))
                i = found.end() if found else i + 1 + (pattern[i + 1 : i + 2] == "?")
                frames.append([0, 0, top[2], captures])
                continue
        else:
            i, item = _item_end(pattern, i), 1
        top = frames[-1]  # after a ')', the group that held the one just closed
        top[0] = min(top[0] + item, _HUGE)
        top[1] = item
    return min(sum(frame[0] for frame in frames), _HUGE), flags


def _number(digits: str) -> int:
    return int(digits) if len(digits) <= 15 else _HUGE


def _item_end(pattern: str, i: int) -> int:
    """Where the one-unit item at ``i`` ends: a character, an escape, or a character class."""
    c = pattern[i]
    if c == "\\":
        kind = pattern[i + 1 : i + 2]
        if pattern[i + 2 : i + 3] == "{" and kind in ("x", "N", "p", "P", "g"):  # \x{263a}, \N{DASH}, \p{Lu}
            end = pattern.find("}", i)
            return len(pattern) if end < 0 else end + 1
        if kind == "g" and pattern[i + 2 : i + 3] == "<":  # \g<name>
            end = pattern.find(">", i)
            return len(pattern) if end < 0 else end + 1
        width = {"x": 2, "u": 4, "U": 8, "p": 1, "P": 1}.get(kind)
        if width is not None:
            return min(i + 2 + width, len(pattern))
        if kind.isdigit():  # a back reference or an octal escape
            j = i + 1
            while j < len(pattern) and j < i + 4 and pattern[j].isdigit():
                j += 1
            return j
        return i + 2
    if c == "[":
        j = i + 1
        if pattern[j : j + 1] == "^":
            j += 1
        if pattern[j : j + 1] == "]":  # a ']' first in a class is the character
            j += 1
        while j < len(pattern) and pattern[j] != "]":
            if pattern[j] == "\\":
                j += 2
            elif pattern.startswith(("[:", "[=", "[."), j):  # [:alpha:] inside a class
                end = pattern.find(pattern[j + 1] + "]", j + 2)
                j = len(pattern) if end < 0 else end + 2
            else:
                j += 1
        return j + 1
    return i + 1


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
    of the same :func:`growth_budget`); :class:`~lrrules.errors.RegexError` with the position in
    the pattern where the compiler gives one.

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
        return compile_regex(pattern)
    except regex.error as exc:
        raise RegexError(f"invalid regex: {str(exc).split(' at position')[0]}", pattern, exc.pos) from None
