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


@functools.lru_cache(maxsize=4096)
def compile_regex(pattern: str) -> regex.Pattern[str]:
    """The compiled form of a rule file's regex (the ``regex`` package, which supports time limits).

    >>> compile_regex("a+") is compile_regex("a+")
    True
    """
    return regex.compile(pattern)


def regex_size(pattern: str) -> int:
    """How many units ``pattern`` holds with every counted repeat (``{m,n}``) written out: an estimate
    from above, taken before compiling. ``a{3}(bc){2}`` -> 7."""
    stack = [0]  # the size of each open group so far
    last = 0  # the size of the item a quantifier after it repeats
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i, last = i + 2, 1
        elif c == "[":
            j = i + 2 if pattern[i + 1 : i + 2] == "]" else i + 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            i, last = j + 1, 1
        elif c == "(":
            stack.append(0)
            i, last = i + 1, 0
            if pattern[i : i + 1] == "?":  # (?:, (?P<name>, (?=, (?i) ...: syntax, not text to match
                while i < n and pattern[i] not in ":>=!)":
                    i += 1
                i += pattern[i : i + 1] != ")"
            continue
        elif c == ")" and len(stack) > 1:
            last = stack.pop()
            i += 1
        elif c == "{" and (found := _COUNT.match(pattern, i)) and any(found.groups()):
            bounds = [b for b in found.groups() if b]
            times = max(int(b) if len(b) <= 9 else 10**9 for b in bounds)
            stack[-1] += last * max(times - 1, 0)
            last *= times
            i = found.end()
            if stack[-1] > MAX_REGEX_SIZE:
                break
            continue
        else:
            i, last = i + 1, 1
        stack[-1] += last
    return sum(stack)


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
