"""Compiling a rule set: a :class:`~lrrules.language.RuleSet` in, the matchers resolution runs out,
cached by the rule set's value (nothing is stored on it); entries in name order, so nothing depends
on their order in the file.

>>> [e.name for e in compile_rules(lrrules.load("lrrules:llrd")).claiming]      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from graphlib import TopologicalSorter

from .entries import Modifier, Rule
from .language import RuleSet
from .matching import Matcher, compile_matcher


@dataclass(frozen=True)
class Entry:
    """A claiming rule or modifier with its compiled matcher (``None`` for the fallback)."""

    kind: str  # "rules" or "modifiers"
    i: int  # position in the file, for error locations
    order: int  # position by name
    spec: Rule | Modifier
    matcher: Matcher | None
    formulas: frozenset[str]  # the names its formulas read

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def freeze(self) -> bool:
        return self.spec.freeze


@dataclass(frozen=True)
class Compiled:
    """What resolution needs from a rule set, built once per distinct rule set."""

    claiming: list[Entry]
    fallback: Entry | None
    modifiers: list[Entry]
    #: Each phase's (freeze, unfreeze) matchers, ``None`` where the phase has none.
    phases: tuple[tuple[Matcher | None, Matcher | None], ...]
    #: The matchers of ``layers: {by: patterns}``, in order; empty under any other layering.
    layer_patterns: tuple[Matcher, ...]
    #: For each claiming rule, every rule it takes precedence over (``overrides``, transitively).
    beats: Mapping[str, frozenset[str]]
    #: The variables the formulas of every entry read.
    reads: frozenset[str]


#: How many compiled rule sets are kept; a sweep over many overrides would otherwise keep them all.
CACHE_SIZE = 64
_cache: dict[str, Compiled] = {}


def compile_rules(rules: RuleSet) -> Compiled:
    """The compiled form of ``rules``, from the cache when an equal rule set was compiled before."""
    key = rules.model_dump_json(round_trip=True)
    found = _cache.pop(key, None) or _compile(rules)
    _cache[key] = found  # last in, the most recent
    while len(_cache) > CACHE_SIZE:
        _cache.pop(next(iter(_cache)), None)
    return found


def _entries(kind: str, specs: Sequence[Rule | Modifier]) -> list[Entry]:
    ordered = sorted(((i, s) for i, s in enumerate(specs) if not getattr(s, "fallback", False)),
                     key=lambda x: x[1].name)
    return [Entry(kind, i, n, s, compile_matcher(s.match), formula_names(s)) for n, (i, s) in enumerate(ordered)]


def _compile(rules: RuleSet) -> Compiled:
    claiming, modifiers = _entries("rules", rules.rules), _entries("modifiers", rules.modifiers)
    fallback = next((Entry("rules", i, -1, r, None, formula_names(r)) for i, r in enumerate(rules.rules)
                     if r.fallback), None)
    phases = tuple((None if p.freeze is None else compile_matcher(p.freeze),
                    None if p.unfreeze is None else compile_matcher(p.unfreeze)) for p in rules.phases)
    layer_patterns = tuple(compile_matcher(m) for m in getattr(rules.layers, "patterns", None) or ())
    entries = [*claiming, *modifiers, *([fallback] if fallback else [])]
    return Compiled(claiming, fallback, modifiers, phases, layer_patterns,
                    precedence({r.name: r.overrides for r in rules.rules if not r.fallback}),
                    frozenset().union(*(e.formulas for e in entries)))


def formula_names(spec: Rule | Modifier) -> frozenset[str]:
    """The variables the formulas of ``spec`` read."""
    return frozenset().union(*(f.names for _, f in spec.formulas()))


def precedence(overrides: Mapping[str, Sequence[str]]) -> dict[str, frozenset[str]]:
    """The transitive closure of ``overrides`` (validated: acyclic, names of claiming rules).

    >>> sorted(precedence({"a": ["b"], "b": ["c"], "c": []})["a"])
    ['b', 'c']
    """
    direct = {name: [n for n in beaten if n in overrides] for name, beaten in overrides.items()}
    out: dict[str, frozenset[str]] = {}
    for name in TopologicalSorter(direct).static_order():  # the rules a rule beats come first
        if name in direct:
            out[name] = frozenset(direct[name]).union(*(out[n] for n in direct[name]))
    return {k: v for k, v in out.items() if v}
