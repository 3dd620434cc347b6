"""Resolution: a compiled rule set and a model's parameters in, a :class:`~lrrules.plan.Plan` out.

One pass over the parameters: each is matched against every rule and modifier under each of its
names, one claiming rule is chosen (:func:`choose_claim`), its settings computed once per distinct
entries, captures and variables read (:func:`settle_values`); one group per distinct final setting.
Nothing depends on the order of the rules in the file.
"""

from __future__ import annotations

import dataclasses
import math
import re
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .cautions import model_cautions, muon_route_cautions, prefix_caution, underflow_caution, underflowed_groups
from .compile import Compiled, Entry, compile_rules
from .errors import FormulaError, LayerError, MatchError, RuleError, RuleFileError
from .formula import Formula
from .language import RuleSet
from .layers import KnownLayers, assign, unordered
from .loader import load
from .matching import Captures
from .params import ParamInfo
from .plan import Assignment, Conflict, Frozen, Group, PhaseEffect, Plan, Status, Step, hashable
from .routes import NDIM_LIMITS, optimizer_type, refused_shape
from .variables import BASE_VARIABLES, BaseShapes, base_shapes, check_base, environment, missing, variable
from .vocabulary import DEFAULT_OPTIMIZER, SETTING_FIELDS

if TYPE_CHECKING:
    import torch

MODEL_FROZEN = "requires_grad=False in the model"
Matched = tuple[Entry, Captures]


def resolve(rules: RuleSet | str | Path, model: torch.nn.Module, base: Any = None) -> Plan:
    """The :class:`~lrrules.plan.Plan` of ``rules`` (a :class:`RuleSet` or what :func:`lrrules.load` opens)
    on ``model`` (bare, compiled or DDP-wrapped); ``base``: the muP base shapes (:func:`base_shapes`).

    >>> plan = lrrules.resolve("rules.yaml", model)      # doctest: +SKIP
    """
    from .params import collect  # looked up at the call: a test stands in for it

    if not isinstance(rules, RuleSet):
        rules = load(rules if isinstance(rules, str) else Path(rules))

    params, tensors = collect(model)
    plan = resolve_params(rules, params, tensors, model, base=None if base is None else base_shapes(base))
    return dataclasses.replace(plan, model=weakref.ref(model))  # to refuse tensors replaced after this


def resolve_params(rules: RuleSet, params: Sequence[ParamInfo], tensors: Sequence[Any] = (),
                   model: torch.nn.Module | KnownLayers | None = None, ordered: bool = True,
                   base: BaseShapes | None = None) -> Plan:
    """Resolve ``rules`` against :class:`ParamInfo` records; ``model`` only for ``layers: {by: timm}``,
    ``tensors`` for ``Plan.param_groups``; ``ordered=False`` (a safetensors checkpoint) refuses what
    depends on the parameters' order.

    >>> rules = RuleSet.model_validate({"version": 1, "defaults": {"lr": 0.1}, "rules": [{"name": "all", "match": "*"}]})
    >>> resolve_params(rules, [ParamInfo("fc.weight", (10, 4), None, True, 0)]).params[0].lr
    0.1
    """
    params = [p if p.index == i else p._replace(index=i) for i, p in enumerate(params)]
    compiled = compile_rules(rules)
    reads = compiled.reads
    if not ordered:
        if "index" in reads:
            raise LayerError(unordered("a formula reading 'index'"))
        ordered = not reads & {"layer", "depth", "num_layers"}  # nothing reads layers: any count will do
    try:
        layers, num_layers = assign(rules.layers, params, model, ordered, compiled.layer_patterns or None)
    except MatchError as exc:
        raise fail(rules, ("layers", "patterns", *exc.at), exc.message) from None
    if base is not None and reads & BASE_VARIABLES:
        check_base(base, params)
    resolver = _Resolver(rules, compiled, layers, num_layers, len(params), base)
    assignments, groups = make_groups(rules, [resolver.one(info) for info in params], resolver.group_values)
    underflowed = underflowed_groups(groups, assignments)
    names = sorted(r.name for r in rules.rules) + sorted(m.name for m in rules.modifiers)
    unmatched = tuple(a.name for a in assignments if a.status == "unmatched" or (a.status == "trainable" and a.rule is None))
    unused = [e for e in (*compiled.claiming, *compiled.modifiers) if e.name not in resolver.used]
    prefix = prefix_caution(params, unused, len(unmatched))
    return Plan(
        source=rules.path, base_lr=rules.defaults.lr, base_weight_decay=rules.defaults.weight_decay,
        unmatched_mode=rules.unmatched, params=assignments, groups=groups,
        unmatched=unmatched,
        conflicts=tuple(resolver.conflicts),
        frozen=tuple(Frozen(a.name, a.note) for a in assignments if a.status == "frozen"),
        unused_rules=tuple(n for n in names if n not in resolver.used),
        # A rounded-off lr is said in the cautions, with why; zero_lr keeps the zeros the file wrote.
        zero_lr=tuple(n for g in groups if g.lr == 0.0 and g.index not in underflowed for n in g.params),
        base_options=rules.defaults.options, num_layers=num_layers,
        phases=phase_effects(rules, compiled, params, assignments), tensors=tuple(tensors),
        cautions=(model_cautions(rules, params, num_layers, reads) + (() if prefix is None else (prefix,))
                  + tuple(underflow_caution(groups[k]) for k in underflowed) + tuple(muon_route_cautions(rules, params, groups))),
        schedule_vars=dict(rules.vars) if any(g.lr_schedule for g in groups) else {},
        infos=tuple(params),
    )


class Values(NamedTuple):
    """A trainable parameter's final settings; equal ``group_key``, one group."""

    lr: float
    lr_scale: float
    weight_decay: float
    options: Mapping[str, Any]
    steps: tuple[Step, ...]
    optimizer: str
    lr_schedule: str | None
    group_key: tuple[Any, ...]
    modifiers: tuple[str, ...]  # the names of the modifiers that made it, one tuple for all its tensors


class _Resolver:
    """One resolution's inputs, caches and findings."""

    def __init__(self, rules: RuleSet, compiled: Compiled, layers: Sequence[int | None], num_layers: int,
                 num_tensors: int, base: BaseShapes | None) -> None:
        self.rules, self.compiled, self.layers, self.num_layers = rules, compiled, layers, num_layers
        self.num_tensors, self.base = num_tensors, base
        self.settled: dict[Any, Values | Conflict | str] = {}
        self.formulas: dict[tuple[Any, ...], float] = {}  # (formula, an option's?, values) -> value
        self.reads: dict[tuple[int | None, ...], list[str]] = {}  # (claim, *modifiers) -> what their formulas read
        self.limits = {route: NDIM_LIMITS.get(optimizer_type(rules, route))
                       for route in [DEFAULT_OPTIMIZER, *rules.optimizers]}
        self.numbers: dict[tuple[Any, ...], int] = {}  # a group's key -> its number
        self.group_values: list[Values] = []  # by group number
        self.used: set[str] = set()
        self.conflicts: list[Conflict] = []

    def one(self, info: ParamInfo) -> Assignment:
        """One parameter matched, claimed and settled (a conflict also goes into :attr:`conflicts`)."""
        candidates, modifiers = self.match(info)
        if not info.requires_grad:
            return self.untrained(info, "frozen", None, MODEL_FROZEN)
        chosen = choose_claim(candidates, self.compiled.beats)
        if isinstance(chosen, Conflict):
            return self.conflict(info, dataclasses.replace(chosen, param=info.name))
        claimed: Matched | None = None
        matched_as = None
        if chosen is not None:
            matched_as, entry, caught = chosen
            claimed = (entry, caught)
        elif self.compiled.fallback is not None:
            claimed = (self.compiled.fallback, {})
            self.used.add(self.compiled.fallback.name)
        elif self.rules.unmatched == "error":
            return self.untrained(info, "unmatched", None, "claimed by no rule")
        rule = claimed[0].name if claimed else None
        values = self.settle(info, claimed, modifiers)
        if isinstance(values, str):
            return self.untrained(info, "frozen", rule, values)
        if isinstance(values, Conflict):
            return self.conflict(info, dataclasses.replace(values, param=info.name))
        allowed = self.limits[values.optimizer]
        if allowed is not None and len(info.shape) not in allowed:
            specs = {e.name: e for e in (*self.rules.rules, *self.rules.modifiers)}
            by = tuple(n for n in (rule, *(e.name for e, _ in modifiers)) if n and specs[n].optimizer == values.optimizer)
            return self.conflict(info, Conflict(info.name, "optimizer", by, values.optimizer,
                                                detail=refused_shape(self.rules, values.optimizer, info.shape)))
        captures: Captures = {}
        for _, found in ([claimed] if claimed else []) + modifiers:
            captures = {**captures, **found} if captures else found  # a matcher's own result, never changed
        number = self.numbers.setdefault(values.group_key, len(self.group_values))
        if number == len(self.group_values):
            self.group_values.append(values)
        return _NEW(Assignment, (info.name, info.shape, info.module, info.index, self.layers[info.index], "trainable",
                                 rule, values.modifiers, captures, values.lr, values.lr_scale,
                                 values.weight_decay, values.options, number, info.aliases,
                                 "" if rule else "claimed by no rule; given the defaults", values.steps, True, matched_as))

    def untrained(self, info: ParamInfo, status: Status, rule: str | None, note: str) -> Assignment:
        return Assignment(info.name, info.shape, info.module, info.index, self.layers[info.index], status, rule,
                          aliases=info.aliases, note=note, trains=False)

    def conflict(self, info: ParamInfo, conflict: Conflict) -> Assignment:
        self.conflicts.append(conflict)
        return self.untrained(info, "conflict", None, conflict.message)

    def match(self, info: ParamInfo) -> tuple[list[tuple[str, Entry, Captures]], list[Matched]]:
        """The claiming rules matching ``info`` under each of its names (tied weights), as (name,
        entry, captures), and the modifiers matching it under any (once, the first name's captures)."""
        candidates: list[tuple[str, Entry, Captures]] = []
        modifiers: dict[str, Matched] = {}
        used = self.used
        entry = None
        try:
            for view in (info,) if not info.aliases else [info._replace(name=n) for n in info.names]:
                for entry in self.compiled.claiming:
                    found = entry.matcher.match(view)  # type: ignore[union-attr]  # only the fallback has none
                    if found is not None:
                        candidates.append((view.name, entry, found))
                        used.add(entry.name)
                for entry in self.compiled.modifiers:
                    found = entry.matcher.match(view)  # type: ignore[union-attr]
                    if found is not None:
                        modifiers.setdefault(entry.name, (entry, found))
                        used.add(entry.name)
        except MatchError as exc:
            assert entry is not None
            raise fail(self.rules, (entry.kind, entry.i, "match"), exc.message) from None
        found_modifiers = list(modifiers.values())  # in name order, the order they are compiled in
        return candidates, found_modifiers if not info.aliases else sorted(found_modifiers, key=lambda m: m[0].order)

    def settle(self, info: ParamInfo, claimed: Matched | None, modifiers: list[Matched]) -> Values | Conflict | str:
        """The settings of ``info`` (or a conflict, or the note of a freeze), computed once per
        distinct entries, captures and values of the variables their formulas read."""
        entries = [claimed, *modifiers] if claimed else modifiers
        which = (claimed[0].order if claimed else None, *[e.order for e, _ in modifiers])
        reads = self.reads.get(which)
        if reads is None:
            reads = self.reads[which] = sorted(frozenset().union(*(e.formulas for e, _ in entries)))
        caught = any(found for _, found in entries)
        key = which if not reads and not caught else (
            which, tuple([tuple(found.items()) for _, found in entries]), tuple([variable(self, info, n) for n in reads]))
        found = self.settled.get(key)
        if found is None:
            freezers = [e.name for e, _ in entries if e.freeze]
            found = self.settled[key] = ("frozen by " + ", ".join(f"'{n}'" for n in freezers) if freezers
                                         else settle_values(self, info, claimed, modifiers))
        return found


_NEW = tuple.__new__  # an Assignment without the named tuple's Python-level __new__: ~100k of them


def choose_claim(candidates: Sequence[tuple[str, Entry, Captures]], beats: Mapping[str, frozenset[str]]
                 ) -> tuple[str, Entry, Captures] | Conflict | None:
    """The claiming candidate (name matched, rule, captures): those another ``overrides`` (``beats``)
    drop out; one rule left claims, none is ``None``, several a conflict (``tied``: on two names).

    >>> choose_claim([], {}) is None
    True
    """
    if len(candidates) < 2:
        return candidates[0] if candidates else None
    beaten = frozenset().union(*(beats.get(e.name, frozenset()) for _, e, _ in candidates))
    left = [c for c in candidates if c[1].name not in beaten]
    if len({e.name for _, e, _ in left}) == 1:
        return left[0]
    by_name: dict[str, list[str]] = {}
    for name, entry, _ in left:
        by_name.setdefault(name, []).append(entry.name)
    for rules in by_name.values():
        if len(rules) > 1:
            return Conflict("", "rules", tuple(rules))
    # Two rules claiming two of a tied tensor's names: reported with each name and its rule.
    return Conflict("", "tied", tuple(r[0] for r in by_name.values()), names=tuple(by_name))


def make_groups(rules: RuleSet, assignments: list[Assignment], values: Sequence[Values]
                ) -> tuple[tuple[Assignment, ...], tuple[Group, ...]]:
    """The groups (by first appearance, settings in ``values``), each optimizer's together in the order
    they are named, the assignments renumbered to match."""
    members: list[list[int]] = [[] for _ in values]
    for position, a in enumerate(assignments):
        if a.group is not None:
            members[a.group].append(position)
    order = {name: i for i, name in enumerate([DEFAULT_OPTIMIZER, *rules.optimizers])}
    numbers = sorted(range(len(values)), key=lambda k: order[values[k].optimizer])
    if numbers != sorted(numbers):
        renumber = {old: new for new, old in enumerate(numbers)}
        assignments = [a if a.group is None else a._replace(group=renumber[a.group]) for a in assignments]
    taken: set[str] = set()
    last: dict[str, int] = {}
    groups = []
    for index, k in enumerate(numbers):
        v, positions = values[k], members[k]
        by = tuple(dict.fromkeys(n for p in positions for n in (assignments[p].rule or "(defaults)",
                                                                   *assignments[p].modifiers)))
        groups.append(Group(index, v.lr, v.lr_scale, v.weight_decay, v.options,
                            tuple([assignments[p].name for p in positions]),
                            sum([assignments[p].numel for p in positions]), by, group_name(by, taken, last),
                            v.optimizer, v.lr_schedule))
    return tuple(assignments), tuple(groups)


def group_name(made_by: tuple[str, ...], taken: set[str], last: dict[str, int] | None = None) -> str:
    """The entries' names joined by ``+``, ``#2``, ``#3`` ... when taken; joins ``taken``. ``last``: the
    number each name stopped at (thousands of groups of one rule in linear time).

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
                  assignments: Sequence[Assignment]) -> tuple[PhaseEffect, ...]:
    """What each phase freezes and unfreezes among the trainable parameters, under any of their names."""
    grouped = [info for info, a in zip(infos, assignments) if a.status == "trainable"] if rules.phases else []
    effects = []
    for k, phase in enumerate(rules.phases):
        found: list[tuple[str, ...]] = []
        for field, matcher in zip(("freeze", "unfreeze"), compiled.phases[k]):
            try:
                found.append(() if matcher is None else tuple(info.name for info in grouped if any(
                    matcher.match(info if n == info.name else info._replace(name=n)) is not None for n in info.names)))
            except MatchError as exc:
                raise fail(rules, ("phases", k, field), exc.message) from None
        effects.append(PhaseEffect(k, phase.from_epoch, phase.from_step, *found))
    return tuple(effects)


def fail(rules: RuleSet, loc: tuple[str | int, ...], message: str, formula: Formula | None = None,
         offset: int | None = None) -> RuleFileError:
    """The error for ``message`` at ``loc`` in the rule file, with the formula and caret where given."""
    expr = formula.text if formula is not None else ""
    return RuleFileError([RuleError(message, rules.locate(loc, offset), loc, expr, offset)])


# --- settle ----------------------------------------------------------------------------------------


def evaluate(r: _Resolver, entry: Entry, where: tuple[str, ...], value: Any, info: ParamInfo,
             env: Mapping[str, Any]) -> tuple[Any, Step]:
    """Setting ``where`` of ``entry`` for ``info`` (a formula evaluated once per distinct input) and its :class:`Step`."""
    if not isinstance(value, Formula):
        return value, Step(entry.name, ".".join(where), None, {}, value)
    loc: tuple[str | int, ...] = (entry.kind, entry.i, *where)
    absent = sorted(value.names - env.keys())
    if absent:
        spot = re.search(rf"\b{absent[0]}\b", value.text)
        raise fail(r.rules, loc, missing(r, info, absent[0]), value, spot.start() if spot else None)
    names = sorted(value.names)
    values = tuple([env[n] for n in names])
    option = where[0] == "options"  # an option may be negative (Adafactor's beta2_decay); a rate may not
    key = (value.text, option, values)
    result = r.formulas.get(key)
    if result is None:
        shown = ", ".join(f"{n}={env[n]!r}" for n in names)
        try:
            result = value.evaluate(env)
        except FormulaError as exc:
            raise fail(r.rules, loc, f"{exc.message} for parameter '{info.name}' ({shown})", value, exc.offset) from None
        if not math.isfinite(result) or (result < 0 and not option):
            raise fail(r.rules, loc, f"gives {result} for parameter '{info.name}' ({shown}); "
                       f"the value must be a finite number{'' if option else ' >= 0'}", value, 0)
        r.formulas[key] = result
    return result, Step(entry.name, ".".join(where), value.text, dict(zip(names, values)), result)


def chosen(info: ParamInfo, field: str, claimed: Matched | None, modifiers: list[Matched], default: Any) -> Any:
    """``optimizer`` or ``lr_schedule``: a modifier's over the rule's; two that disagree, a conflict."""
    given = {e.name: getattr(e.spec, field) for e, _ in modifiers if getattr(e.spec, field) is not None}
    if len(set(given.values())) > 1:
        return Conflict(info.name, "modifiers", tuple(given), field)
    if given:
        return next(iter(given.values()))
    own = getattr(claimed[0].spec, field) if claimed is not None else None
    return default if own is None else own


def settle_values(ctx: _Resolver, info: ParamInfo, claimed: Matched | None, modifiers: list[Matched]
                  ) -> Values | Conflict:
    """The settings of ``info`` from its claiming entry and modifiers."""
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
        result, step = evaluate(ctx, entry, where, raw, info, env)
        steps.append(step)
        return result

    options = dict(named.options if named is not None else rules.defaults.options)
    claim = _entry_values(claimed, value) if claimed is not None else {}
    options.update((k[8:], v) for k, v in claim.items() if k.startswith("options."))
    set_by: dict[str, dict[str, Any]] = {}  # what the modifiers set, by setting and modifier
    lr_mult = wd_mult = 1.0
    for matched in modifiers:
        for setting, result in _entry_values(matched, value).items():
            if setting == "lr_mult":
                lr_mult *= result
            elif setting == "weight_decay_mult":
                wd_mult *= result
            else:
                set_by.setdefault(setting, {})[matched[0].name] = result
    for setting, by in set_by.items():
        if len({hashable(v) for v in by.values()}) > 1:
            return Conflict(info.name, "modifiers", tuple(by), setting)
        if setting.startswith("options."):
            options[setting[8:]] = next(iter(by.values()))
    absolute = next(iter(set_by["lr"].values())) if "lr" in set_by else claim.get("lr")
    wd = (next(iter(set_by["weight_decay"].values())) if "weight_decay" in set_by
          else claim.get("weight_decay", base_wd * claim.get("weight_decay_mult", 1.0))) * wd_mult
    if absolute is not None:
        lr = absolute * lr_mult
        lr_scale = lr / rules.defaults.lr
    else:
        lr_scale = claim.get("lr_mult", 1.0) * lr_mult
        lr = base_lr * lr_scale
        if base_lr != rules.defaults.lr:  # lr_scale stays relative to defaults.lr, the plan's base_lr
            lr_scale = lr / rules.defaults.lr
    # Each value is finite, but their product may not be (1e300 x 1e10): the final ones are checked.
    if not (math.isfinite(lr) and math.isfinite(lr_scale) and math.isfinite(wd)):
        entry = claimed[0] if claimed is not None else modifiers[0][0]
        names = ", ".join(dict.fromkeys(e.name for e, _ in ([claimed] if claimed else []) + modifiers))
        raise fail(rules, (entry.kind, entry.i), f"the settings of {names} give parameter '{info.name}' lr {lr} "
                   f"(x{lr_scale} base) and weight decay {wd}; the final values must be finite: the multipliers "
                   "overflow")
    key = (lr, lr_scale, wd, tuple(sorted((k, hashable(v)) for k, v in options.items())), route, schedule)
    return Values(lr, lr_scale, wd, options, tuple(steps), route, schedule, key, tuple(e.name for e, _ in modifiers))


def _entry_values(matched: Matched, value: Any) -> dict[str, Any]:
    """The settings one entry gives (``lr_mult``, ``options.momentum`` ...), each through ``value``."""
    entry, captures = matched
    out = {}
    for field in SETTING_FIELDS:
        raw = getattr(entry.spec, field)
        if raw is not None:
            out[field] = value(entry, captures, (field,), raw)
    for key, raw in (entry.spec.options or {}).items():
        out[f"options.{key}"] = value(entry, captures, ("options", key), raw)
    return out
