"""What a rule file decides for every model, from the file alone (``lrrules check RULES``), each at
its place: an optimizer type only torch can judge, a file that trains nothing whatever the model, a
rule that only turns weight decay off beside another claiming its names (a modifier was meant).
Conservative and torch-free: what depends on a module, a shape or a formula's value waits for a model.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import yaml

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .entries import Rule
    from .language import RuleSet
    from .plan import Conflict

#: A rule holding only these gives its parameters the base lr: rarely what its author wanted.
DECAY_SETTINGS = ("weight_decay", "weight_decay_mult")
#: Whole regexes that a search finds in any parameter name (names are never empty).
_ANY_REGEX = {"", "^", "$", ".*", ".+", ".*?", ".+?", "^.*", "^.+", ".*$", ".+$", "^.*$", "^.+$", "^.*?$",
              "(.*)", "^(.*)$", "(?s).*", "(?s)^.*$"}

#: The steps comparing globs may take in one file, all pairs together (a usual file needs thousands).
OVERLAP_BUDGET = 200_000

MODIFIER_HINT = "a rule that only turns weight decay off is usually meant as a modifier: move it under `modifiers:`"


@dataclass(frozen=True)
class Lint:
    """One finding about a rule file: where (``loc`` in the document), what, and how sure: a
    ``problem`` holds on every model, a ``warning`` on any model with names the message shows."""

    loc: tuple[str | int, ...]
    message: str
    severity: Literal["problem", "warning"]


def lint(rules: RuleSet) -> list[Lint]:
    """Everything :mod:`lrrules.lint` finds in ``rules`` without a model, in file order.

    >>> import lrrules
    >>> rules = lrrules.loads("version: 1\\ndefaults: {lr: 0.1}\\nrules:\\n  - {name: all, fallback: true, freeze: true}\\n")
    >>> [f.loc for f in lint(rules)]                                    # doctest: +SKIP
    [('rules', 0, 'freeze')]
    """
    found = [f for f in (frozen_everywhere(rules), phases_freeze_everything(rules)) if f is not None]
    return unjudged_types(rules) + found + decay_rule_overlaps(rules)


def unjudged_types(rules: RuleSet) -> list[Lint]:
    """A warning at each optimizer ``type`` that the torch-free table lacks and that only torch can
    judge here (:func:`lrrules.signatures.names_optimizer`): a newer torch's class, or a typo."""
    from .optimizer_table import GENERATED_WITH, TIMM, TORCH
    from .errors import did_you_mean
    from .signatures import named_types, names_optimizer

    made = f"torch {GENERATED_WITH['torch']} and timm {GENERATED_WITH['timm']}"
    return [Lint(loc, f"optimizer type '{name}' is not one of {made}, the versions the torch-free table "
                      f"knows{did_you_mean(name, [*TORCH, *TIMM], n=3)}; if it is a newer torch's class, "
                      "`lrrules check --model` (or `lrrules.build`) asks torch", "warning")
            for loc, name in named_types(rules) if names_optimizer(name) is None]


# --- nothing trains ----------------------------------------------------------------------------


def frozen_everywhere(rules: RuleSet) -> Lint | None:
    """The finding when the claiming rules leave nothing to train on any model: every rule freezes
    (or sets a constant lr of 0), and one of them claims every name (a fallback, ``'*'``, ``.*``).
    ``None`` otherwise (the base lr is above 0, so names no rule claims would train or be unmatched)."""
    claiming = [(i, r) for i, r in enumerate(rules.rules) if not r.remove]
    # A modifier's `lr` replaces the rule's: a modifier giving a nonzero (or unknown) lr trains.
    if not claiming or any(not m.remove and m.lr is not None and _constant(m.lr) != 0 for m in rules.modifiers):
        return None
    # With `optimizers:`, a rule or modifier may route to an optimizer of its own lr: the base is unknown.
    base = None if rules.optimizers else rules.defaults.lr
    if not all(r.freeze or _zero_lr(r, base) == 0 for _, r in claiming):
        return None
    covering = [(i, r) for i, r in claiming if r.fallback or (r.match is not None and matches_every_name(r.match))]
    if not covering:
        return None  # names no rule claims would be unmatched (an error the model's check reports) or train
    i, rule = covering[0]
    what = "the fallback" if rule.fallback else f"'{rule.name}' matches every name and"
    key = "freeze" if rule.freeze else ("lr" if rule.lr is not None else "lr_mult")
    how = "freezes" if rule.freeze else "sets lr 0"
    others = ("; every other rule freezes or sets lr 0 too" if len(claiming) > 1 else "")
    return Lint(("rules", i, key),
                f"nothing trains on any model: {what} {how}{others}, so the optimizer would get no parameter "
                "to train; give the parameters that should train a rule without 'freeze' (for example "
                "`- {name: head, match: 'fc.*', lr_mult: 10}`), and keep the freezing rule for the rest",
                "problem")


def phases_freeze_everything(rules: RuleSet) -> Lint | None:
    """The finding when a phase starting at epoch or step 0 freezes every name (``'*'``) and no
    phase ever unfreezes anything: the model trains at no point. ``None`` otherwise."""
    if any(p.unfreeze is not None for p in rules.phases):
        return None
    for i, phase in enumerate(rules.phases):
        start = phase.from_epoch if phase.from_epoch is not None else phase.from_step
        if start == 0 and phase.freeze is not None and matches_every_name(phase.freeze):
            unit = "epoch" if phase.from_epoch is not None else "step"
            return Lint(("phases", i, "freeze"),
                        f"nothing trains at any point: this phase freezes every parameter from {unit} 0 and no phase "
                        "unfreezes any; start it later, narrow its 'freeze', or add a phase with 'unfreeze' "
                        f"(for example `- {{from_{unit}: 2, unfreeze: 'fc.*'}}`)", "problem")
    return None


def _zero_lr(rule: Rule, base_lr: float | None) -> float | None:
    """The rule's lr where the file alone fixes it, else ``None`` (``base_lr`` ``None``: unknown)."""
    if rule.lr is not None:
        return _constant(rule.lr)
    if rule.lr_mult is not None:
        mult = _constant(rule.lr_mult)
        return 0.0 if mult == 0 else None if mult is None or base_lr is None else mult * base_lr
    return base_lr


def _constant(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    return getattr(value, "constant", None)


def matches_every_name(matcher: Any) -> bool:
    """Whether ``matcher`` matches every parameter name of every model, as far as the file alone
    says: a glob of only ``*``, a regex that finds ``.*``, ``any`` with such a member, ``all`` (and
    a mapping's fields) made only of such. Modules, shapes and conditions depend on the model.

    >>> matches_every_name("**"), matches_every_name("*.bias")
    (True, False)
    """
    if isinstance(matcher, str):
        return matcher != "" and set(matcher) == {"*"}
    if isinstance(matcher, list):
        return any(matches_every_name(m) for m in matcher)
    fields = {k: v for k, v in matcher.model_dump(by_alias=True, exclude_none=True).items()}
    if not fields or set(fields) - {"glob", "regex", "any", "all"}:
        return False
    glob_ok = "glob" not in fields or any(matches_every_name(g) for g in matcher.glob)
    regex_ok = "regex" not in fields or all(r in _ANY_REGEX for r in matcher.regex)
    any_ok = "any" not in fields or any(matches_every_name(m) for m in matcher.any_)
    all_ok = "all" not in fields or all(matches_every_name(m) for m in matcher.all_)
    return glob_ok and regex_ok and any_ok and all_ok


# --- weight decay off, written as a rule -------------------------------------------------------


def decay_only(entry: Rule) -> bool:
    """Whether a rule sets nothing but weight decay (``weight_decay`` or ``weight_decay_mult``)."""
    if entry.remove or entry.fallback or entry.freeze or all(getattr(entry, k) is None for k in DECAY_SETTINGS):
        return False
    return all(getattr(entry, k) is None for k in ("lr", "lr_mult", "options", "optimizer", "lr_schedule"))


def as_modifier(rule: Rule) -> str:
    """The YAML that moves ``rule`` under ``modifiers:``, the entry written as the file holds it.

    >>> print(as_modifier(Rule(name="no-decay", match="*.bias", weight_decay=0)))   # doctest: +SKIP
    modifiers:
      - name: no-decay
        match: '*.bias'
        weight_decay: 0
    """
    entry = _whole(rule.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True,
                                   exclude={"overrides"}))
    # One key a line, indented as docs/language.md writes entries; a matcher's mapping on one line.
    lines = [f"{k}: {_flow(v)}" for k, v in entry.items()]
    return "modifiers:\n  - " + "\n    ".join(lines)


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").rstrip()  # a lone scalar's end-of-document mark


def _whole(value: Any) -> Any:
    # The file's `0` reads back as 0.0; written as the author wrote it.
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def conflict_hints(rules: RuleSet, conflicts: Iterable[Conflict]) -> list[str]:
    """For each rule that sets only weight decay and is one of the rules in a conflict, the hint to
    make it a modifier, with the YAML; each rule once, in file order."""
    involved = {name for c in conflicts if c.kind == "rules" for name in c.rules}
    return [hint for name, hint in modifier_hints(rules).items() if name in involved]


def modifier_hints(rules: RuleSet) -> dict[str, str]:
    """The hint to make it a modifier, by the name of each rule that sets only weight decay."""
    return {r.name: f"hint: '{r.name}' sets only weight decay; {MODIFIER_HINT}, like this:\n{as_modifier(r)}"
            for r in rules.rules if decay_only(r)}


def decay_rule_overlaps(rules: RuleSet) -> list[Lint]:
    """A warning at each rule that sets only weight decay and whose globs share a name with the
    globs of another claiming rule (neither overriding the other, directly or through others): on
    a model with such a name the two conflict. Matchers other than plain globs are left to the
    model's check."""
    from .compile import precedence

    found: list[Lint] = []
    # Precedence is transitive: a rule outranking one that outranks another outranks that one too.
    ranks = precedence({r.name: r.overrides for r in rules.rules if not r.fallback})
    claiming = [(r, _plain_globs(r.match)) for r in rules.rules
                if not r.remove and not r.fallback and r.match is not None]
    budget = [OVERLAP_BUDGET]

    def shared(a: str, b: str) -> str | None:
        # Looking at a pair costs a step, walking it at most len(a) * len(b) more; past the budget
        # (a hostile file of huge globs, or of thousands of rules), pairs go unread: no warning,
        # never a hang. Globs whose literal starts or ends disagree share no name: no walk.
        budget[0] -= 1
        if not _literal_ends_agree(a, b):
            return None
        cost = (len(a) + 1) * (len(b) + 1)
        if cost > budget[0]:
            return None
        budget[0] -= cost
        return shared_name(a, b)

    for i, rule in enumerate(rules.rules):
        if not decay_only(rule) or rule.match is None:
            continue
        mine = _plain_globs(rule.match)
        for other, theirs in claiming:
            if budget[0] <= 0:
                return found
            budget[0] -= 1
            if other is rule or other.name in ranks.get(rule.name, ()) or rule.name in ranks.get(other.name, ()):
                continue
            witness = next((w for a in mine for b in theirs if (w := shared(a, b)) is not None), None)
            if witness is not None:
                found.append(Lint(("rules", i, "match"),
                                  f"'{rule.name}' sets only weight decay and claims names that rule '{other.name}' "
                                  f"claims too (such as '{witness}'), a conflict on any model that has them; "
                                  f"{MODIFIER_HINT}, like this:\n{as_modifier(rule)}", "warning"))
                break
    return found


def _literal_ends_agree(a: str, b: str) -> bool:
    # The text before the first wildcard and after the last: every name either glob matches
    # starts and ends with them, so one of each pair must start (end) the other.
    (head_a, tail_a), (head_b, tail_b) = _literal_ends(a), _literal_ends(b)
    return (head_a.startswith(head_b) or head_b.startswith(head_a)) and (
        tail_a.endswith(tail_b) or tail_b.endswith(tail_a))


def _literal_ends(pattern: str) -> tuple[str, str]:
    wild = [i for i, c in enumerate(pattern) if c in "*?["]
    return (pattern[:wild[0]], pattern[wild[-1] + 1:]) if wild else (pattern, pattern)


def _plain_globs(matcher: Any) -> Sequence[str]:
    globs = [matcher] if isinstance(matcher, str) else matcher if isinstance(matcher, list) else []
    return [] if any("[" in g for g in globs) else globs


def shared_name(a: str, b: str) -> str | None:
    """The shortest name both globs match (``*`` any text, dots included; ``?`` one character), or
    ``None`` when no name matches both. A breadth-first walk over pairs of positions in the two
    globs, so ``'layer*'`` and ``'*.bias'`` give ``'layer.bias'``.

    >>> shared_name("layer*", "*.bias"), shared_name("*.weight", "*.bias")
    ('layer.bias', None)
    """
    start, end = (0, 0), (len(a), len(b))
    # A 0-1 breadth-first walk: skipping a '*' costs no character, so a state is settled when it
    # leaves the queue at its least length, not when first seen.
    length = {start: 0}
    came: dict[tuple[int, int], tuple[tuple[int, int], str]] = {}
    queue = deque([(0, start)])

    def step(state: tuple[int, int], nxt: tuple[int, int], char: str) -> None:
        size = length[state] + (1 if char else 0)
        if size < length.get(nxt, size + 1):
            length[nxt], came[nxt] = size, (state, char)
            queue.append((size, nxt)) if char else queue.appendleft((size, nxt))

    while queue:
        size, state = queue.popleft()
        if size > length[state]:
            continue  # reached more cheaply since it was queued
        if state == end:
            out = []
            while state in came:
                state, char = came[state]
                out.append(char)
            return "".join(reversed(out))
        i, j = state
        if i < len(a) and a[i] == "*":
            step(state, (i + 1, j), "")
        if j < len(b) and b[j] == "*":
            step(state, (i, j + 1), "")
        if i < len(a) and j < len(b):
            x, y = a[i], b[j]
            wild_x, wild_y = x in "*?", y in "*?"
            if wild_x and wild_y:
                char = "x"
            elif wild_x or wild_y or x == y:
                char = y if wild_x else x
            else:
                continue
            step(state, (i if x == "*" else i + 1, j if y == "*" else j + 1), char)
    return None
