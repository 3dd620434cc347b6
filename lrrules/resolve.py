"""Resolution: a compiled rule set and a model's parameters in, a :class:`~lrrules.plan.Plan` out.

Small pure functions over plain records, one per step, run by :func:`resolve_params`:

- :func:`match_param`: which claiming rules (as :class:`Candidate`) and modifiers match a parameter
  under any of its names (tied weights have several);
- :func:`claim`: the claim step, one rule (or the fallback) out of the candidates, or a conflict;
  :func:`choose_claim` is its pure core;
- :func:`settle`: one parameter's claim and modifiers to its settings (:func:`settle_values`, with
  :func:`variable`, :func:`environment` and :func:`evaluate` for the formulas);
- :func:`group`: the rows into optimizer groups, one per distinct final setting;
- :func:`phase_effects`: what each training phase freezes and unfreezes.

Nothing here depends on the order of the rules or modifiers in the file, and nothing touches a
model or an optimizer. It is one pass over the parameters that mostly looks things up: matchers are
compiled once per rule set and indexed by their literal text, so a name is matched only against the
rules that could match it; the settings of a parameter are computed once per distinct combination
of claiming rule, modifiers, captures and the variables their formulas read (a :class:`Memo`), and
then reused.
"""

from __future__ import annotations

import dataclasses
import math
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .compile import Compiled, Entry, compile_rules
from .errors import FormulaError, LayerError, MatchError, ModelError, RuleError, RuleFileError
from .formula import Formula, compile_formula
from .language import DEFAULT_OPTIMIZER, SETTING_FIELDS, RuleSet
from .layers import assign, unordered
from .lint import muon_route_cautions
from .matching import Captures, Index, with_regex_budget
from .params import MAX_DIMS, ParamInfo, wrapped_prefix
from .routes import NDIM_LIMITS, optimizer_type, refused_shape
from .plan import Conflict, Frozen, Group, Outcome, PhaseEffect, Plan, Rows, Settled, Step, hashable

if TYPE_CHECKING:
    import torch

MODEL_FROZEN = "requires_grad=False in the model"
NO_CAPTURES: Captures = {}  # shared by every row that captured nothing; never changed
DIM_NAMES = tuple(f"dim{k}" for k in range(MAX_DIMS))


def resolve(rules: RuleSet, model: torch.nn.Module, base: Any = None) -> Plan:
    """Resolve ``rules`` against ``model`` (bare, compiled or DDP-wrapped: names are unwrapped).

    ``base`` gives the base shapes the muP variables (``width_mult``, ``ninf``, ...) read: the same
    architecture at the base width, as a model or anything :func:`base_shapes` takes.

    >>> plan = resolve(lrrules.load("rules.yaml"), model)      # doctest: +SKIP
    >>> plan = resolve(lrrules.load("lrrules:mup"), wide, base=narrow)   # doctest: +SKIP
    """
    from .params import collect

    params, tensors = collect(model)
    # The plan keeps a weak reference to the model, to refuse tensors replaced after this point.
    plan = resolve_params(rules, params, tensors, model, base=None if base is None else base_shapes(base))
    return dataclasses.replace(plan, model=weakref.ref(model))


@with_regex_budget  # one total time for every regex of a resolution, layers included
def resolve_params(
    rules: RuleSet,
    params: Sequence[ParamInfo],
    tensors: Sequence[Any] = (),
    model: torch.nn.Module | None = None,
    ordered: bool = True,
    base: BaseShapes | None = None,
) -> Plan:
    """Resolve ``rules`` against parameters described by :class:`ParamInfo`.

    ``model`` is needed only by ``layers: {by: timm}``; ``tensors`` only by ``Plan.param_groups``;
    ``base`` (see :func:`base_shapes`) only by the muP variables.
    A parameter's ``index`` is its position in ``params``; ``ordered=False`` (a safetensors
    checkpoint) refuses what depends on that order instead of computing it from the wrong one.

    >>> plan = resolve_params(rules, [ParamInfo("fc.weight", (10, 4), None, True, 0)])   # doctest: +SKIP
    """
    params = [p if p.index == i else p._replace(index=i) for i, p in enumerate(params)]
    compiled = compile_rules(rules)
    # The variables the formulas read, from the compiled entries (each worked out once per rule set).
    entries = [*compiled.claiming, *compiled.modifiers, *([compiled.fallback] if compiled.fallback else [])]
    reads = frozenset().union(*(e.formulas for e in entries))
    if not ordered:
        if "index" in reads:
            raise LayerError(unordered("a formula reading 'index'"))
        if not reads & {"layer", "depth", "num_layers"}:
            ordered = True  # nothing reads the layers: the default layering may count as it likes
    try:
        layers, num_layers = assign(rules.layers, params, model, ordered, compiled.layer_patterns or None)
    except MatchError as exc:  # a regex of layers.patterns past its time limit: say which one, where
        loc = ("layers", "patterns", *exc.at)
        raise RuleFileError([RuleError(exc.message, rules.locate(loc), loc)]) from None
    if base is not None and reads & BASE_VARIABLES:
        _check_base(base, params)
    ctx = Context(rules, compiled, layers, num_layers, len(params), base)
    outcomes, conflicts, used = resolve_rows(ctx, params)
    outcomes, groups = group(params, outcomes, rules)
    underflowed = underflowed_groups(groups, outcomes)
    cautions = (_cautions(rules, params, num_layers, reads) + tuple(underflow_caution(groups[k]) for k in underflowed)
                + tuple(muon_route_cautions(rules, params, groups)))
    return make_plan(ctx, params, outcomes, groups, conflicts, used, tuple(tensors), cautions, underflowed)


def underflowed_groups(groups: Sequence[Group], outcomes: Sequence[Outcome]) -> dict[int, tuple[Step, ...]]:
    """The groups whose lr is 0 though nothing the file wrote is 0 (issue 21): a product of nonzero
    multipliers, or a formula (``0.5 ** depth`` over thousands of layers), rounded to 0. Each with
    the lr steps that led there. A 0 written as a number, or by a formula that did not round
    (``0 if depth > 3 else 1``), is meant, and not here."""
    zero = {g.index for g in groups if g.lr == 0.0}
    found: dict[int, tuple[Step, ...]] = {}
    for outcome in outcomes:
        k = outcome.group
        if k not in zero or k in found or outcome.settled is None:
            continue
        zero.discard(k)
        steps = tuple(st for st in outcome.settled.steps if st.setting in ("lr", "lr_mult"))
        meant = any(st.value == 0 and (st.formula is None or
                                       not compile_formula(st.formula, None).underflows(st.variables))
                    for st in steps)
        if not meant:
            found[k] = steps
    return found


def underflow_caution(group: Group) -> str:
    """The warning for a group whose lr rounded to 0."""
    names = ", ".join(f"'{n}'" for n in group.params[:3]) + (
        f" and {len(group.params) - 3} more" if len(group.params) > 3 else "")
    return (f"{names}: the lr rounds to 0 (group '{group.name}', made by {', '.join(group.rules)}), below the "
            "smallest float though no factor is 0: a lr of 0 trains nothing, a frozen tensor in disguise; "
            "freeze it ('freeze: true') if that is meant, or bound the multiplier (max(..., 1e-6))")


#: Fewer layers than this make `decay ** depth` one or two rates: layer decay that does nothing.
MIN_LAYERS = 3


def _cautions(rules: RuleSet, params: Sequence[ParamInfo], num_layers: int, reads: frozenset[str]) -> tuple[str, ...]:
    """Warnings about the model and the layering, as timm warns when its layer decay has one layer
    (``reads``: the variables the formulas read)."""
    out = []
    prefix = wrapped_prefix(params)
    if prefix is not None:
        out.append(f"every parameter name starts with '{prefix}': the model looks wrapped in something lrrules "
                   "does not unwrap; pass the inner model (model.module) so that anchored rules match")
    used = sorted(reads & {"layer", "depth", "num_layers"})
    # A layering the user listed (by: patterns) has the layers they meant, however few.
    if used and num_layers < MIN_LAYERS and len(params) >= MIN_LAYERS and rules.layers.by != "patterns":
        strategy = rules.layers.by
        instead = ("'layers: {by: patterns, ...}' to name the layers by hand" if strategy == "blocks" else
                   "'layers: {by: blocks}' (the repeated block stacks, any model) or 'by: timm' on a model "
                   "timm groups")
        out.append(f"the formulas read {', '.join(used)}, but layers 'by: {strategy}' puts this model in "
                   f"{num_layers} layer(s), so they give at most {num_layers} values; use {instead}")
    return tuple(out)


class Context(NamedTuple):
    """What settling any parameter of one resolution reads, the same for all of them (read only)."""

    rules: RuleSet
    compiled: Compiled
    layers: Sequence[int | None]  # each parameter's layer, by its index
    num_layers: int
    num_tensors: int
    base: BaseShapes | None = None  # each name's base shape (muP), when given


@dataclasses.dataclass
class Memo:
    """The caches of one resolution: settings per distinct input, formula values per distinct input."""

    #: (which entries, their captures, the values of the variables they read) -> settings
    settled: dict[Any, Settled | Conflict] = dataclasses.field(default_factory=dict)
    #: which entries -> what depends only on them (see :func:`combination`)
    combos: dict[tuple[Any, ...], tuple[tuple[str, ...], tuple[str, ...], str]] = dataclasses.field(
        default_factory=dict)
    #: (formula text, the values of the names it reads) -> its value
    formulas: dict[tuple[str, tuple[Any, ...]], float] = dataclasses.field(default_factory=dict)
    #: the groups, numbered in order of first appearance: settings' key -> number, and by identity
    group_of: dict[tuple[Any, ...], int] = dataclasses.field(default_factory=dict)
    group_by_settled: dict[int, int] = dataclasses.field(default_factory=dict)  # settled objects live in `settled`
    #: each optimizer route's shape limits (``routes.NDIM_LIMITS``; ``None``: any shape)
    limits: dict[str, frozenset[int] | None] = dataclasses.field(default_factory=dict)
    #: the outcomes met so far, shared by the parameters that resolve alike (see :func:`resolve_one`)
    outcomes: dict[Any, Outcome] = dataclasses.field(default_factory=dict)


def resolve_rows(ctx: Context, params: Sequence[ParamInfo]) -> tuple[list[Outcome], list[Conflict], set[str]]:
    """Every parameter's :class:`Outcome` (shared by parameters that resolve alike), the trainable
    ones numbered by group in order of first appearance (see :func:`group`); the conflicts; the
    names of the rules and modifiers that matched."""
    memo = Memo()
    used: set[str] = set()
    outcomes: list[Outcome] = []
    conflicts: list[Conflict] = []
    for info in params:
        outcome = resolve_one(ctx, memo, info, used)
        if isinstance(outcome, Conflict):
            conflicts.append(outcome)
            outcome = Outcome("conflict", note=outcome.message)
        outcomes.append(outcome)
    fallback = ctx.compiled.fallback
    if fallback is not None and any(o.rule == fallback.name for o in memo.outcomes.values()):
        used.add(fallback.name)
    return outcomes, conflicts, used


def resolve_one(ctx: Context, memo: Memo, info: ParamInfo, used: set[str]) -> Outcome | Conflict:
    """One parameter's outcome (or its conflict, named after it): matched, claimed, settled, numbered
    by group; the names of the entries that matched it go into ``used``."""
    candidates, modifiers = match_param(ctx, info, used)
    if not info.requires_grad:
        return shared(memo, Outcome("frozen", note=MODEL_FROZEN))
    if len(candidates) == 1:  # most parameters: one rule matched, nothing to choose
        matched_as, entry, captures = candidates[0]
    else:
        chosen = claim(ctx, info, candidates)
        if isinstance(chosen, Conflict):
            return chosen
        if isinstance(chosen, str):
            return shared(memo, Outcome("unmatched", note=chosen))
        entry, captures, matched_as = chosen if chosen is not None else (None, {}, "")
    rule = entry.name if entry is not None else None
    settling = settle(ctx, memo, info, (entry, captures) if entry is not None else None, modifiers)
    if isinstance(settling, Conflict):
        return dataclasses.replace(settling, param=info.name)
    if isinstance(settling, str):
        return shared(memo, Outcome("frozen", rule, note=settling))
    names, all_captures, settled, key = settling
    allowed = memo.limits.get(settled.optimizer, ())  # the numbers of dimensions its optimizer takes
    if allowed == ():
        allowed = memo.limits[settled.optimizer] = NDIM_LIMITS.get(optimizer_type(ctx.rules, settled.optimizer))
    if allowed is not None and len(info.shape) not in allowed:
        specs = {e.name: e for e in (*ctx.rules.rules, *ctx.rules.modifiers)}
        by = tuple(n for n in (rule, *names) if n and specs[n].optimizer == settled.optimizer)
        return Conflict(info.name, "optimizer", by, settled.optimizer,
                        detail=refused_shape(ctx.rules, settled.optimizer, info.shape))
    # The settle key fixes the rule, the modifiers, the captures and the settings; with the name
    # matched (None: the parameter's own, so that parameters share it), it fixes the whole outcome.
    if matched_as == info.name:
        matched_as = None
    known = memo.outcomes.get((key, matched_as))
    if known is not None:
        return known
    number = memo.group_by_settled.get(id(settled))
    if number is None:  # first parameter with these settings (or equal ones from other entries)
        number = memo.group_by_settled[id(settled)] = memo.group_of.setdefault(settled.key, len(memo.group_of))
    outcome = memo.outcomes[(key, matched_as)] = Outcome(
        "trainable", rule, names, all_captures, settled, number,
        "" if rule else "claimed by no rule; given the defaults", matched_as)
    return outcome


def shared(memo: Memo, outcome: Outcome) -> Outcome:
    """``outcome``, or an equal one met before (for outcomes with no captures and no settings)."""
    return memo.outcomes.setdefault((outcome.status, outcome.rule, outcome.note), outcome)


def group(infos: Sequence[ParamInfo], outcomes: list[Outcome], rules: RuleSet
          ) -> tuple[list[Outcome], tuple[Group, ...]]:
    """The optimizer groups of the trainable parameters (numbered by :func:`resolve_one` in order of
    first appearance). With ``optimizers:``, the groups of one optimizer are next to each other, in
    the order the optimizers are named, and the outcomes renumbered to match: the combined
    optimizer's param_groups are the plan's groups, in its order."""
    members: list[list[int]] = []
    for position, outcome in enumerate(outcomes):
        number = outcome.group
        if number is not None:
            if number == len(members):
                members.append([])
            members[number].append(position)
    if rules.optimizers:
        order = {name: i for i, name in enumerate([DEFAULT_OPTIMIZER, *rules.optimizers])}
        members.sort(key=lambda ps: order[outcomes[ps[0]].settled.optimizer])  # type: ignore[union-attr]
        renumbered: dict[int, Outcome] = {}
        outcomes = list(outcomes)
        for index, positions in enumerate(members):
            for p in positions:
                old = outcomes[p]
                new = renumbered.get(id(old))
                if new is None:
                    new = renumbered[id(old)] = old._replace(group=index)
                outcomes[p] = new
    groups = []
    seen_names: set[str] = set()
    last_numbers: dict[str, int] = {}
    for index, positions in enumerate(members):
        first = outcomes[positions[0]].settled
        assert first is not None
        by = dict.fromkeys(n for p in positions for n in (outcomes[p].rule or "(defaults)", *outcomes[p].modifiers))
        groups.append(Group(index, first.lr, first.lr_scale, first.weight_decay, first.options,
                            tuple([infos[p].name for p in positions]),
                            sum([infos[p].numel for p in positions]), tuple(by),
                            group_name(tuple(by), seen_names, last_numbers), first.optimizer, first.lr_schedule))
    return outcomes, tuple(groups)


def group_name(made_by: tuple[str, ...], taken: set[str], last: dict[str, int] | None = None) -> str:
    """A readable group name not in ``taken`` (which it joins): the names of the entries that made the
    group, joined by ``+``; ``#2``, ``#3`` ... when that is taken (one rule, two lrs by formula).
    ``last`` remembers the number each name stopped at, so thousands of groups of one rule (a
    formula of the tensor's depth) are named in linear time, not quadratic.

    >>> taken = set(); group_name(("head", "no-decay"), taken), group_name(("head", "no-decay"), taken)
    ('head+no-decay', 'head+no-decay#2')
    """
    base = "+".join(n.strip("()") for n in made_by) or "group"
    k = 1 if last is None else last.get(base, 1)  # every number below it is taken: `taken` only grows
    name = base if k == 1 else f"{base}#{k}"
    while name in taken:
        k += 1
        name = f"{base}#{k}"
    taken.add(name)
    if last is not None:
        last[base] = k
    return name


def phase_effects(rules: RuleSet, compiled: Compiled, infos: Sequence[ParamInfo],
                  outcomes: Sequence[Outcome]) -> tuple[PhaseEffect, ...]:
    """What each training phase freezes and unfreezes among the grouped (trainable) parameters."""
    grouped = [info for info, o in zip(infos, outcomes) if o.status == "trainable"] if rules.phases else []
    effects = []
    for k, phase in enumerate(rules.phases):
        found: dict[str, tuple[str, ...]] = {}
        for field in ("freeze", "unfreeze"):
            if getattr(phase, field) is None:
                found[field] = ()
                continue
            matcher = compiled.phases[k][field == "unfreeze"]
            assert matcher is not None  # compiled wherever the spec is given
            try:
                # A tied tensor under any of its names, as the rules see it (lm_head.* freezes a tied lm_head.weight).
                found[field] = tuple(info.name for info in grouped if any(
                    matcher.match(info if n == info.name else info._replace(name=n)) is not None for n in info.names))
            except MatchError as exc:
                raise fail(rules, ("phases", k, field), exc.message) from None
        effects.append(PhaseEffect(k, phase.from_epoch, phase.from_step, found["freeze"], found["unfreeze"]))
    return tuple(effects)


def make_plan(ctx: Context, infos: Sequence[ParamInfo], outcomes: Sequence[Outcome], groups: tuple[Group, ...],
              conflicts: list[Conflict], used: set[str], tensors: tuple[Any, ...], cautions: tuple[str, ...],
              underflowed: Mapping[int, Any] = {}) -> Plan:
    """The :class:`Plan` of the outcomes and groups: the lists of problems read off the outcomes."""
    rules = ctx.rules
    # Rules first, then modifiers, each by name: the file's order never shows in a plan.
    names = sorted(r.name for r in rules.rules) + sorted(m.name for m in rules.modifiers)
    return Plan(
        source=rules.path,
        base_lr=rules.defaults.lr,
        base_weight_decay=rules.defaults.weight_decay,
        unmatched_mode=rules.unmatched,
        rows=Rows(infos, ctx.layers, outcomes),
        groups=groups,
        unmatched=tuple([info.name for info, o in zip(infos, outcomes) if o.status == "unmatched"
                         or (o.status == "trainable" and o.rule is None)]),
        conflicts=tuple(conflicts),
        frozen=tuple([Frozen(info.name, o.note) for info, o in zip(infos, outcomes) if o.status == "frozen"]),
        unused_rules=tuple(n for n in names if n not in used),
        # A rounded-off lr is said in the cautions, with why; zero_lr keeps the zeros the file wrote.
        zero_lr=tuple(n for g in groups if g.lr == 0.0 and g.index not in underflowed for n in g.params),
        base_options=rules.defaults.options,
        num_layers=ctx.num_layers,
        phases=phase_effects(rules, ctx.compiled, infos, outcomes),
        tensors=tensors,
        schedule_vars=dict(rules.vars) if any(g.lr_schedule for g in groups) else {},
        cautions=cautions,
    )


# --- match and claim -----------------------------------------------------------------------------


class Candidate(NamedTuple):
    """A claiming rule that matched a parameter under one of its names."""

    name: str  # the name matched (a tied tensor has several)
    entry: Entry
    captures: Captures


def fail(rules: RuleSet, loc: tuple[str | int, ...], message: str, formula: Formula | None = None,
         offset: int | None = None) -> RuleFileError:
    """The error for ``message`` at ``loc`` in the rule file, with the formula and caret where given."""
    expr = formula.text if formula is not None else ""
    return RuleFileError([RuleError(message, rules.locate(loc, offset), loc, expr, offset)])


def matching(rules: RuleSet, entries: Sequence[Entry], index: Index, param: ParamInfo,
             used: set[str]) -> list[tuple[Entry, Captures]]:
    """The entries of ``entries`` that match ``param`` (under its ``name``), with what they captured;
    their names go into ``used``."""
    found = []
    for position in index.candidates(param.name):
        entry = entries[position]
        try:
            captures = entry.matcher.match(param)  # type: ignore[union-attr]
        except MatchError as exc:
            raise fail(rules, (entry.kind, entry.i, "match"), exc.message) from None
        if captures is not None:
            found.append((entry, captures))
            used.add(entry.name)
    return found


def match_param(ctx: Context, info: ParamInfo, used: set[str]
                ) -> tuple[list[Candidate], list[tuple[Entry, Captures]]]:
    """The claiming rules and the modifiers that match ``info`` under any of its names (their names
    go into ``used``).

    The one place tied weights are matched: each claiming rule is a candidate under every name it
    matches (the claim step sees them all), a modifier counts once, with the captures of the first
    name it matched, in name order.
    """
    compiled, rules = ctx.compiled, ctx.rules
    if not info.aliases:
        candidates = [Candidate(info.name, entry, found)
                      for entry, found in matching(rules, compiled.claiming, compiled.claim_index, info, used)]
        return candidates, matching(rules, compiled.modifiers, compiled.modifier_index, info, used)
    views = [info._replace(name=n) for n in info.names]
    candidates = [Candidate(view.name, entry, found) for view in views
                  for entry, found in matching(rules, compiled.claiming, compiled.claim_index, view, used)]
    mods_by_name: dict[str, tuple[Entry, Captures]] = {}
    for view in views:
        for entry, found in matching(rules, compiled.modifiers, compiled.modifier_index, view, used):
            mods_by_name.setdefault(entry.name, (entry, found))
    return candidates, sorted(mods_by_name.values(), key=lambda m: m[0].order)


def claim(ctx: Context, info: ParamInfo, candidates: Sequence[Candidate]
          ) -> tuple[Entry, Captures, str] | Conflict | str | None:
    """The claim step: the claiming entry, its captures and the name it matched; the fallback when no
    rule matched; a :class:`Conflict` (named after ``info``); the note of an unmatched parameter
    (``unmatched: error``, no fallback); or ``None`` (given the defaults)."""
    chosen = choose_claim(candidates, ctx.compiled.beats)
    if isinstance(chosen, Conflict):
        return dataclasses.replace(chosen, param=info.name)
    if chosen is not None:
        return chosen.entry, chosen.captures, chosen.name
    if ctx.compiled.fallback is not None:
        return ctx.compiled.fallback, {}, ""
    if ctx.rules.unmatched == "error":
        return "claimed by no rule"
    return None


def choose_claim(candidates: Sequence[Candidate], beats: Mapping[str, frozenset[str]]) -> Candidate | Conflict | None:
    """The claim step for one parameter: its candidates under all its names in, the claiming one out.

    A candidate whose rule another candidate's rule ``overrides`` (``beats``, transitive) drops out.
    One rule left claims (through the first name it matched); none matched gives ``None``; two or more
    left are a conflict: ``rules`` when one name has several, else ``tied`` (two rules, two names).
    Pure, and independent of the order of the rules in the file.

    >>> choose_claim([], {}) is None
    True
    """
    if not candidates:
        return None
    present = {c.entry.name for c in candidates}
    beaten = frozenset().union(*(beats.get(n, frozenset()) for n in present))
    left = [c for c in candidates if c.entry.name not in beaten]
    if len({c.entry.name for c in left}) == 1:
        return left[0]
    by_name: dict[str, list[str]] = {}
    for c in left:
        by_name.setdefault(c.name, []).append(c.entry.name)
    for rules in by_name.values():
        if len(rules) > 1:
            return Conflict("", "rules", tuple(rules))
    # Two rules claiming two of a tied tensor's names: reported with each name and its rule.
    return Conflict("", "tied", tuple(r[0] for r in by_name.values()), names=tuple(by_name))


# --- settle ----------------------------------------------------------------------------------------

Matched = tuple[Entry, Captures]


def settle(ctx: Context, memo: Memo, info: ParamInfo, claimed: Matched | None,
           modifiers: list[Matched]) -> tuple[tuple[str, ...], Captures, Settled, Any] | Conflict | str:
    """One parameter's settings from its claim and modifiers: the modifiers' names, every capture,
    the :class:`Settled` values and the key they are kept under; a :class:`Conflict`; or the note of
    a freeze.

    The settings depend only on which entries matched, their captures and the variables their
    formulas read: ``memo`` keeps them by exactly that, so each distinct input is settled once.
    """
    entries = [claimed, *modifiers] if claimed else modifiers
    which = (claimed[0].order if claimed else None, *[e.order for e, _ in modifiers])
    combo = memo.combos.get(which)
    if combo is None:
        combo = memo.combos[which] = combination(claimed, modifiers)
    reads, modifier_names, frozen_note = combo
    if frozen_note:
        return frozen_note
    caught = [found for _, found in entries if found]
    if not caught:
        captures, by_entry = NO_CAPTURES, ()
    else:
        if len(caught) == 1:
            captures = caught[0]  # a matcher's own result, never changed
        else:
            captures = {}
            for found in caught:
                captures.update(found)
        by_entry = tuple([tuple(found.items()) for _, found in entries])
    key = (which, by_entry, tuple([variable(ctx, info, n) for n in reads]) if reads else ())
    settled = memo.settled.get(key)
    if settled is None:
        settled = memo.settled[key] = settle_values(ctx, memo.formulas, info, claimed, modifiers)
    if isinstance(settled, Conflict):
        return settled
    return modifier_names, captures, settled, key


def combination(claimed: Matched | None, modifiers: list[Matched]) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """For one combination of matching entries: the variables their formulas read, the modifiers'
    names, and the note of a freeze (empty when none of them freezes)."""
    entries = [claimed, *modifiers] if claimed else modifiers
    reads = tuple(sorted(frozenset().union(*(e.formulas for e, _ in entries))))
    freezers = [e.name for e, _ in entries if e.freeze]
    note = "frozen by " + ", ".join(f"'{n}'" for n in freezers) if freezers else ""
    return reads, tuple(e.name for e, _ in modifiers), note


def environment(ctx: Context, info: ParamInfo, captures: Captures, names: Iterable[str]) -> dict[str, Any]:
    """The variables ``names`` (the names a formula reads) that have a value for ``info``: the
    captures first, then the file's ``vars``, then the parameter's and the layering's (:func:`variable`).

    >>> environment(ctx, ParamInfo("w", (3, 4), None, True, 0), {}, ["dim1", "dim2"])   # doctest: +SKIP
    {'dim1': 4}
    """
    env = {}
    for name in names:
        if name in captures:
            env[name] = captures[name]
        elif name in ctx.rules.vars:
            env[name] = ctx.rules.vars[name]
        else:
            found = variable(ctx, info, name)
            if found is not _NONE:
                env[name] = found
    return env


_NONE = object()  # a variable with no value for a parameter (dim2 of a matrix, the layer of none)


def variable(ctx: Context, info: ParamInfo, name: str) -> Any:
    """The value of the parameter's or the layering's variable ``name`` for ``info``, or ``_NONE``
    (no such variable, or no value for this parameter). Read by :func:`environment`, and by
    :func:`settle`'s key, where the names no parameter changes are the same for every one.

    >>> variable(ctx, ParamInfo("w", (3, 4), None, True, 0), "ndim")   # doctest: +SKIP
    2
    """
    if name in ("layer", "depth"):
        layer = ctx.layers[info.index]
        if layer is None:
            return _NONE
        return layer if name == "layer" else ctx.num_layers - 1 - layer
    if name in DIM_NAMES:
        k = int(name[3:])
        return info.shape[k] if k < len(info.shape) else _NONE
    if name in BASE_VARIABLES:
        return base_variable(ctx.base, info, name)
    getter = _PARAMETER_VARIABLES.get(name)
    return _NONE if getter is None else getter(ctx, info)


_PARAMETER_VARIABLES = {
    "base_lr": lambda ctx, info: ctx.rules.defaults.lr,
    "base_weight_decay": lambda ctx, info: ctx.rules.defaults.weight_decay,
    "num_layers": lambda ctx, info: ctx.num_layers,
    "index": lambda ctx, info: info.index,
    "num_tensors": lambda ctx, info: ctx.num_tensors,
    "ndim": lambda ctx, info: info.ndim,
    "numel": lambda ctx, info: info.numel,
    "fan_in": lambda ctx, info: info.fan_in,
    "fan_out": lambda ctx, info: info.fan_out,
}


# --- base shapes (muP) -----------------------------------------------------------------------------

#: A tensor's base shape: its size at the base width in each dimension; ``None`` for a dimension that
#: is no width (mup's base-shape files write ``null`` there).
BaseShape = tuple[int | None, ...]
#: Every name of the base model's tensors to its base shape.
BaseShapes = Mapping[str, BaseShape]
#: The variables muP defines per tensor from its base shape (mup's ``InfShape``).
BASE_VARIABLES = frozenset({"width_mult", "ninf"})


def base_shapes(base: Any) -> dict[str, BaseShape]:
    """Each name's base shape, from ``base``: a model at the base width (its parameters' shapes,
    every name of a tied tensor), :class:`ParamInfo` records (a checkpoint's), or a mapping of
    name to shape (mup's base shapes: ``None`` for a dimension that is no width).

    >>> base_shapes({"fc.weight": [64, None]})
    {'fc.weight': (64, None)}
    """
    if hasattr(base, "named_parameters"):
        from .params import collect

        base = collect(base)[0]
    if isinstance(base, Mapping):
        out = {}
        for name, shape in base.items():
            dims = tuple(shape)
            if not isinstance(name, str) or not all(d is None or (isinstance(d, int) and not isinstance(d, bool)
                                                                   and d >= 0) for d in dims):
                raise ModelError(f"base shape of {name!r} is {list(dims)}: sizes are whole numbers >= 0 "
                                 "(None for a dimension that is no width)")
            out[name] = dims
        return out
    return {name: tuple(p.shape) for p in base for name in p.names}


def _check_base(base: BaseShapes, params: Sequence[ParamInfo]) -> None:
    """Refuse a base that has tensors the model lacks (mup asserts the two name sets are equal); a
    tensor of the model missing from the base is said where a formula reads its base shape."""
    names = {n for p in params for n in p.names}
    extra = sorted(n for n in base if n not in names)
    if extra:
        shown = ", ".join(f"'{n}'" for n in extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise ModelError(f"the base model has tensors the model lacks ({shown}); the base must be the same "
                         "architecture at the base width")


def _base_shape(base: BaseShapes | None, info: ParamInfo) -> BaseShape | None:
    """``info``'s base shape under any of its names, or ``None``."""
    return None if base is None else next((base[n] for n in info.names if n in base), None)


def infinite_dims(base: BaseShapes | None, info: ParamInfo) -> tuple[tuple[int, int], ...] | None:
    """The (base size, size) of each dimension of ``info`` that differs from its base shape, in
    order: muP's infinite ("width") dimensions; ``None`` when the tensor has no base shape."""
    shape = _base_shape(base, info)
    if shape is None or len(shape) != len(info.shape):
        return None
    return tuple((b, d) for b, d in zip(shape, info.shape) if b is not None and b != d)


def base_variable(base: BaseShapes | None, info: ParamInfo, name: str) -> Any:
    """The muP variable ``name`` of ``info``, as mup's ``InfShape`` defines it, or ``_NONE``.

    ``ninf``: how many dimensions differ from the base shape; ``width_mult``: size / base size of
    the last of them (for a matrix with both, the fan-in's), 1 when none differ, no value when more
    than two do (mup's optimizers refuse those).
    """
    dims = infinite_dims(base, info)
    if dims is None:
        return _NONE
    if name == "ninf":
        return len(dims)
    if len(dims) > 2:
        return _NONE
    return dims[-1][1] / dims[-1][0] if dims else 1


def base_problem(base: BaseShapes | None, info: ParamInfo, name: str) -> str:
    """Why the muP variable ``name`` has no value for ``info``."""
    if base is None:
        return (f"'{name}' (muP) reads the base shapes, and none were given: pass the same architecture at the "
                "base width (resolve(rules, model, base=narrow_model), build(..., base=...), --base-model SPEC)")
    shape = _base_shape(base, info)
    if shape is None:
        return f"parameter '{info.name}' is not in the base model; the base must be the same architecture"
    if len(shape) != len(info.shape):
        return (f"parameter '{info.name}' has shape {list(info.shape)} and base shape {list(shape)}: "
                "another number of dimensions")
    dims = infinite_dims(base, info) or ()
    return (f"parameter '{info.name}' (shape {list(info.shape)}, base {list(shape)}) has {len(dims)} width "
            "dimensions; muP defines width_mult for at most two (mup's optimizers refuse more)")


def evaluate(rules: RuleSet, cache: dict[tuple[str, tuple[Any, ...]], float], entry: Entry,
             where: tuple[str, ...], value: Any, info: ParamInfo, env: Mapping[str, Any],
             base: BaseShapes | None = None) -> tuple[Any, Step]:
    """The value of setting ``where`` of ``entry`` for ``info`` (a plain number as it is, a formula
    evaluated in ``env``, through ``cache``) and the :class:`Step` that records it (``base``: the
    base shapes, for the message when a muP variable has no value)."""
    if not isinstance(value, Formula):
        return value, Step(entry.name, ".".join(where), None, {}, value)
    loc = (entry.kind, entry.i, *where)
    missing = value.names - env.keys()
    if missing:
        name = sorted(missing)[0]
        if name in DIM_NAMES:
            why = (f"parameter '{info.name}' has shape {list(info.shape)}, so no {name}; add "
                   f"'ndim: [{int(name[3:]) + 1}, ...]' (or more) to the match, or use fan_in / fan_out")
        elif name in ("layer", "depth"):
            why = f"parameter '{info.name}' has no layer: it matches none of layers.patterns; add one that covers it"
        elif name in BASE_VARIABLES:
            why = base_problem(base, info, name)
        else:
            why = f"regex group '{name}' captured nothing for parameter '{info.name}'"
        spot = re.search(rf"\b{name}\b", value.text)
        raise fail(rules, loc, why, value, spot.start() if spot else None)
    names = sorted(value.names)
    key = (value.text, tuple(env[n] for n in names))
    result = cache.get(key)
    if result is None:
        shown = ", ".join(f"{n}={env[n]!r}" for n in names)
        try:
            result = value.evaluate(env)
        except FormulaError as exc:
            raise fail(rules, loc, f"{exc.message} for parameter '{info.name}' ({shown})", value, exc.offset) from None
        option = where[0] == "options"  # an option may be negative (Adafactor's beta2_decay); a rate may not
        if not math.isfinite(result) or (result < 0 and not option):
            raise fail(rules, loc, f"gives {result} for parameter '{info.name}' ({shown}); "
                       f"the value must be a finite number{'' if option else ' >= 0'}", value, 0)
        cache[key] = result
    return result, Step(entry.name, ".".join(where), value.text, dict(zip(names, key[1])), result)


def chosen(info: ParamInfo, field: str, claimed: Matched | None, modifiers: list[Matched], default: Any) -> Any:
    """``optimizer`` or ``lr_schedule``: a modifier's replaces the claiming rule's; two modifiers that
    disagree are a conflict."""
    given = {e.name: getattr(e.spec, field) for e, _ in modifiers if getattr(e.spec, field) is not None}
    if len(set(given.values())) > 1:
        return Conflict(info.name, "modifiers", tuple(given), field)
    if given:
        return next(iter(given.values()))
    if claimed is not None and getattr(claimed[0].spec, field) is not None:
        return getattr(claimed[0].spec, field)
    return default


def settle_values(ctx: Context, cache: dict[tuple[str, tuple[Any, ...]], float], info: ParamInfo,
                  claimed: Matched | None, modifiers: list[Matched]) -> Settled | Conflict:
    """The settings of ``info`` from its claiming entry and modifiers (no cache of its own but the
    formula values': :func:`settle` calls it once per distinct input)."""
    rules = ctx.rules
    route = chosen(info, "optimizer", claimed, modifiers, DEFAULT_OPTIMIZER)
    schedule = chosen(info, "lr_schedule", claimed, modifiers, None)
    for found in (route, schedule):
        if isinstance(found, Conflict):
            return found
    named = rules.optimizers.get(route)
    # A named optimizer's lr, weight_decay and options are the defaults of what is routed to it.
    base_lr = named.lr if named is not None and named.lr is not None else rules.defaults.lr
    base_wd = named.weight_decay if named is not None and named.weight_decay is not None else rules.defaults.weight_decay
    bases = {"base_lr": base_lr, "base_weight_decay": base_wd}
    steps: list[Step] = []

    def value(entry: Entry, captures: Captures, where: tuple[str, ...], raw: Any) -> Any:
        # Only what the formula reads: the route's base lr and weight decay over everything else.
        env = {}
        if isinstance(raw, Formula):
            env = environment(ctx, info, captures, raw.names)
            env.update((k, bases[k]) for k in raw.names & bases.keys())
        result, step = evaluate(rules, cache, entry, where, raw, info, env, ctx.base)
        steps.append(step)
        return result

    options = dict(named.options if named is not None else rules.defaults.options)
    scale, absolute, wd = _claimed_values(claimed, base_wd, options, value)
    modified = _modifier_values(info, modifiers, value)
    if isinstance(modified, Conflict):
        return modified
    lr_mult, wd_mult, set_values = modified
    absolute = set_values.pop("lr", absolute)
    wd = set_values.pop("weight_decay", wd)
    options.update((k.removeprefix("options."), v) for k, v in set_values.items())
    if absolute is not None:
        lr = absolute * lr_mult
        lr_scale = lr / rules.defaults.lr
    else:
        lr_scale = scale * lr_mult
        lr = base_lr * lr_scale
        if base_lr != rules.defaults.lr:  # lr_scale stays relative to defaults.lr, the plan's base_lr
            lr_scale = lr / rules.defaults.lr
    wd *= wd_mult
    # Each value is finite, but their product may not be (1e300 x 1e10): the final ones are checked.
    if not (math.isfinite(lr) and math.isfinite(lr_scale) and math.isfinite(wd)):
        entry = claimed[0] if claimed is not None else modifiers[0][0]
        names = ", ".join(dict.fromkeys(e.name for e, _ in ([claimed] if claimed else []) + modifiers))
        raise fail(rules, (entry.kind, entry.i), f"the settings of {names} give parameter '{info.name}' lr {lr} "
                   f"(x{lr_scale} base) and weight decay {wd}; the final values must be finite: the multipliers "
                   "overflow")
    return Settled(lr, lr_scale, wd, options, tuple(steps), route, schedule)


def _claimed_values(claimed: Matched | None, base_wd: float, options: dict[str, Any],
                    value: Any) -> tuple[float, float | None, float]:
    """The claiming entry's lr multiplier, absolute lr (or ``None``) and weight decay; its options go
    into ``options``."""
    scale, absolute, wd = 1.0, None, base_wd
    if claimed is None:
        return scale, absolute, wd
    entry, captures = claimed
    spec = entry.spec
    if spec.lr is not None:
        absolute = value(entry, captures, ("lr",), spec.lr)
    elif spec.lr_mult is not None:
        scale = value(entry, captures, ("lr_mult",), spec.lr_mult)
    if spec.weight_decay is not None:
        wd = value(entry, captures, ("weight_decay",), spec.weight_decay)
    elif spec.weight_decay_mult is not None:
        wd = base_wd * value(entry, captures, ("weight_decay_mult",), spec.weight_decay_mult)
    for key, raw in (spec.options or {}).items():
        options[key] = value(entry, captures, ("options", key), raw)
    return scale, absolute, wd


def _modifier_values(info: ParamInfo, modifiers: list[Matched], value: Any
                     ) -> tuple[float, float, dict[str, Any]] | Conflict:
    """The modifiers' product of lr multipliers, of weight decay multipliers, and the values they set
    (``lr``, ``weight_decay``, ``options.KEY``); two modifiers setting one of them differently are a
    conflict."""
    set_by: dict[str, dict[str, Any]] = {}
    lr_mult = wd_mult = 1.0
    for entry, found in modifiers:
        spec = entry.spec
        for field in SETTING_FIELDS:
            raw = getattr(spec, field)
            if raw is None:
                continue
            result = value(entry, found, (field,), raw)
            if field == "lr_mult":
                lr_mult *= result
            elif field == "weight_decay_mult":
                wd_mult *= result
            else:
                set_by.setdefault(field, {})[entry.name] = result
        for key, raw in (spec.options or {}).items():
            set_by.setdefault(f"options.{key}", {})[entry.name] = value(entry, found, ("options", key), raw)
    out = {}
    for setting, values in set_by.items():
        if len({hashable(v) for v in values.values()}) > 1:
            return Conflict(info.name, "modifiers", tuple(values), setting)
        out[setting] = next(iter(values.values()))
    return lr_mult, wd_mult, out
