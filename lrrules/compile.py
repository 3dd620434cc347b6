"""Compiling a rule set: a :class:`~lrrules.language.RuleSet` in, the matchers resolution runs out.

A pure function of the rule set's value, cached by that value: two equal rule sets share one
compiled form, and nothing is stored on the rule set, which stays plain data (copyable, picklable,
comparable). Resolution only looks things up in what this builds: the claiming rules and modifiers
with their matchers in name order (so nothing depends on their order in the file), the fallback,
and the phases' and layer patterns' matchers. No torch, no model.

>>> compiled = compile_rules(lrrules.load("rules.yaml"))       # doctest: +SKIP
>>> [entry.name for entry in compiled.claiming]                 # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .language import Modifier, Rule, RuleSet
from .matching import Matcher, compile_matcher


@dataclass(frozen=True, slots=True)
class Entry:
    """A claiming rule or modifier with its compiled matcher."""

    kind: str  # "rules" or "modifiers"
    i: int  # position in the file, for error locations
    order: int  # position by name: every loop over entries runs in this order
    spec: Rule | Modifier
    matcher: Matcher | None
    formulas: frozenset[str]  # the names its formulas read
    name: str = ""
    freeze: bool = False
    key: tuple[str, int] = ("", 0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.spec.name)
        object.__setattr__(self, "freeze", self.spec.freeze)
        object.__setattr__(self, "key", (self.kind, self.order))


@dataclass(frozen=True)
class Compiled:
    """What resolution needs from a rule set, built once per distinct rule set."""

    claiming: list[Entry]
    fallback: Entry | None
    modifiers: list[Entry]
    #: Each phase's (freeze, unfreeze) matchers, ``None`` where the phase has none.
    phases: tuple[tuple[Matcher | None, Matcher | None], ...]
    #: The matchers of ``layers: {by: patterns}``, in order; empty under any other layering.
    layer_patterns: tuple[Matcher, ...] = ()
    #: For each claiming rule, every rule it takes precedence over (``overrides``, transitively).
    beats: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: The variables the formulas of every entry read.
    reads: frozenset[str] = frozenset()


def formula_names(spec: Rule | Modifier) -> frozenset[str]:
    """The variables the formulas of ``spec`` read."""
    return frozenset().union(*(f.names for _, f in spec.formulas()))


#: How many compiled rule sets are kept; a sweep over many overrides would otherwise keep them all.
CACHE_SIZE = 64
_cache: OrderedDict[str, Compiled] = OrderedDict()
_lock = threading.Lock()


def compile_rules(rules: RuleSet) -> Compiled:
    """The compiled form of ``rules``, from the cache when an equal rule set was compiled before."""
    key = rules.model_dump_json(round_trip=True)
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    compiled = _compile(rules)
    with _lock:
        _cache[key] = compiled
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled


def _compile(rules: RuleSet) -> Compiled:
    claiming_specs = sorted(((i, r) for i, r in enumerate(rules.rules) if not r.fallback), key=lambda x: x[1].name)
    modifier_specs = sorted(enumerate(rules.modifiers), key=lambda x: x[1].name)
    claiming = [Entry("rules", i, n, r, compile_matcher(r.match), formula_names(r))
                for n, (i, r) in enumerate(claiming_specs)]
    modifiers = [Entry("modifiers", i, n, m, compile_matcher(m.match), formula_names(m))
                 for n, (i, m) in enumerate(modifier_specs)]
    fallback = next((Entry("rules", i, -1, r, None, formula_names(r))
                     for i, r in enumerate(rules.rules) if r.fallback), None)
    phases = tuple(tuple(None if spec is None else compile_matcher(spec) for spec in (p.freeze, p.unfreeze))
                   for p in rules.phases)
    layer_patterns = tuple(compile_matcher(m) for m in getattr(rules.layers, "patterns", None) or ())
    entries = [*claiming, *modifiers, *([fallback] if fallback else [])]
    return Compiled(claiming, fallback, modifiers, phases, layer_patterns,  # type: ignore[arg-type]
                    precedence({r.name: r.overrides for r in rules.rules if not r.fallback}),
                    frozenset().union(*(e.formulas for e in entries)))


def precedence(overrides: Mapping[str, Sequence[str]]) -> dict[str, frozenset[str]]:
    """The transitive closure of ``overrides`` (validated: acyclic, names of claiming rules).

    >>> sorted(precedence({"a": ["b"], "b": ["c"], "c": []})["a"])
    ['b', 'c']
    """
    out: dict[str, frozenset[str]] = {}
    for start in overrides:
        stack = [start]  # iterative depth-first: a long chain of overrides must not hit the recursion limit
        while stack:
            name = stack[-1]
            if name in out:
                stack.pop()
                continue
            direct = [n for n in overrides.get(name, ()) if n in overrides]
            todo = [n for n in direct if n not in out]
            if todo:
                stack.extend(todo)
                continue
            out[name] = frozenset(direct).union(*(out[n] for n in direct))
            stack.pop()
    return {k: v for k, v in out.items() if v}
