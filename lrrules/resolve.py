"""Resolution: a compiled rule set and a model's parameters in, a :class:`~lrrules.plan.Plan` out.

For each parameter (under each of its names, for tied weights): which claiming rules match, which
modifiers match; then its settings; then its group, one per distinct final setting, in order of
first appearance. Nothing here depends on the order of the rules or modifiers in the file.

It is one pass over the parameters that mostly looks things up. Matchers are compiled once per rule
set and indexed by their literal prefixes, so a name is matched only against the rules that could
match it; the settings of a parameter are computed once per distinct combination of claiming rule,
modifiers, captures and the variables their formulas read, and then reused.
"""

from __future__ import annotations

import dataclasses
import math
import re
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .compile import Compiled, Entry, compile_rules, formula_names
from .errors import FormulaError, LayerError, MatchError, RuleError, RuleFileError
from .formula import Formula
from .language import DEFAULT_OPTIMIZER, SETTING_FIELDS, Modifier, Rule, RuleSet
from .layers import Layering, assign, unordered
from .matching import Captures, Index, with_regex_budget
from .params import MAX_DIMS, ParamInfo, wrapped_prefix
from .routes import refused_shape
from .plan import Conflict, Frozen, Group, PhaseEffect, Plan, Row, Settled, Step, hashable

if TYPE_CHECKING:
    import torch

MODEL_FROZEN = "requires_grad=False in the model"
DIM_NAMES = tuple(f"dim{k}" for k in range(MAX_DIMS))
#: The formula variables that depend on a parameter's shape, for the settings cache key.
SHAPE_VARIABLES = {
    "fan_in": lambda info: info.fan_in,
    "fan_out": lambda info: info.fan_out,
    **{n: (lambda info, k=k: info.shape[k] if k < len(info.shape) else None) for k, n in enumerate(DIM_NAMES)},
}


def resolve(rules: RuleSet, model: torch.nn.Module) -> Plan:
    """Resolve ``rules`` against ``model`` (bare, compiled or DDP-wrapped: names are unwrapped)."""
    from .params import collect

    params, tensors = collect(model)
    # The plan keeps a weak reference to the model, to refuse tensors replaced after this point.
    return dataclasses.replace(resolve_params(rules, params, tensors, model), model=weakref.ref(model))


@with_regex_budget  # one total time for every regex of a resolution, layers included
def resolve_params(
    rules: RuleSet,
    params: Sequence[ParamInfo],
    tensors: Sequence[Any] = (),
    model: torch.nn.Module | None = None,
    ordered: bool = True,
) -> Plan:
    """Resolve ``rules`` against parameters described by :class:`ParamInfo`.

    ``model`` is needed only by ``layers: {by: timm}``; ``tensors`` only by ``Plan.param_groups``.
    A parameter's ``index`` is its position in ``params``; ``ordered=False`` (a safetensors
    checkpoint) refuses what depends on that order instead of computing it from the wrong one.
    """
    params = [p if p.index == i else p._replace(index=i) for i, p in enumerate(params)]
    if not ordered:
        reads = {n for entry in (*rules.rules, *rules.modifiers) for n in formula_names(entry)}
        if "index" in reads:
            raise LayerError(unordered("a formula reading 'index'"))
        if not reads & {"layer", "depth", "num_layers"}:
            ordered = True  # nothing reads the layers: the default layering may count as it likes
    compiled = compile_rules(rules)
    try:
        layering = assign(rules.layers, params, model, ordered, compiled.layer_patterns or None)
    except MatchError as exc:  # a regex of layers.patterns past its time limit: say which one, where
        loc = ("layers", "patterns", *exc.at)
        raise RuleFileError([RuleError(exc.message, rules.locate(loc), loc)]) from None
    plan = _Resolver(rules, compiled, params, layering).plan(tuple(tensors))
    cautions = _cautions(rules, params, layering[1])
    return dataclasses.replace(plan, cautions=cautions) if cautions else plan


#: Fewer layers than this make `decay ** depth` one or two rates: layer decay that does nothing.
MIN_LAYERS = 3


def _cautions(rules: RuleSet, params: Sequence[ParamInfo], num_layers: int) -> tuple[str, ...]:
    """Warnings about the model and the layering, as timm warns when its layer decay has one layer."""
    out = []
    prefix = wrapped_prefix(params)
    if prefix is not None:
        out.append(f"every parameter name starts with '{prefix}': the model looks wrapped in something lrrules "
                   "does not unwrap; pass the inner model (model.module) so that anchored rules match")
    reads = {n for entry in (*rules.rules, *rules.modifiers) for n in formula_names(entry)}
    used = sorted(reads & {"layer", "depth", "num_layers"})
    if used and num_layers < MIN_LAYERS and len(params) >= MIN_LAYERS:
        strategy = rules.layers.by
        instead = ("'layers: {by: patterns, ...}' to name the layers by hand" if strategy == "blocks" else
                   "'layers: {by: blocks}' (the repeated block stacks, any model) or 'by: timm' on a model "
                   "timm groups")
        out.append(f"the formulas read {', '.join(used)}, but layers 'by: {strategy}' puts this model in "
                   f"{num_layers} layer(s), so they give at most {num_layers} values; use {instead}")
    return tuple(out)


class _Claimed(NamedTuple):
    rule: str | None
    modifiers: tuple[str, ...]
    captures: Captures
    settled: Settled
    matched_as: str = ""  # the name the claiming rule matched (one of a tied tensor's names)


def group_name(made_by: tuple[str, ...], taken: set[str]) -> str:
    """A readable group name not in ``taken`` (which it joins): the names of the entries that made the
    group, joined by ``+``; ``#2``, ``#3`` ... when that is taken (one rule, two lrs by formula).

    >>> taken = set(); group_name(("head", "no-decay"), taken), group_name(("head", "no-decay"), taken)
    ('head+no-decay', 'head+no-decay#2')
    """
    base = "+".join(n.strip("()") for n in made_by) or "group"
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}#{k}"
    taken.add(name)
    return name


class Candidate(NamedTuple):
    """A claiming rule that matched a parameter under one of its names."""

    name: str  # the name matched (a tied tensor has several)
    entry: Entry
    captures: Captures


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


class _Resolver:
    def __init__(self, rules: RuleSet, compiled: Compiled, params: Sequence[ParamInfo], layering: Layering) -> None:
        self.rules = rules
        self.params = params
        self.layers, self.num_layers = layering
        self.compiled = compiled
        self.base_lr = rules.defaults.lr
        self.base_wd = rules.defaults.weight_decay
        self.base_options = rules.defaults.options
        self.used: set[str] = set()
        self.formula_cache: dict[tuple[str, tuple[Any, ...]], float] = {}
        self.settled: dict[Any, Settled | Conflict] = {}
        self.combos: dict[tuple[Any, ...], tuple[tuple[str, ...], tuple[str, ...], str]] = {}

    def fail(self, entry: Entry, where: tuple[str, ...], message: str, formula: Formula | None = None,
             offset: int | None = None) -> RuleFileError:
        return self.fail_at((entry.kind, entry.i, *where), message, formula, offset)

    def fail_at(self, loc: tuple[str | int, ...], message: str, formula: Formula | None = None,
                offset: int | None = None) -> RuleFileError:
        expr = formula.text if formula is not None else ""
        return RuleFileError([RuleError(message, self.rules.locate(loc, offset), loc, expr, offset)])

    def matching(self, entries: list[Entry], index: Index, param: ParamInfo) -> list[tuple[Entry, Captures]]:
        found = []
        for position in index.candidates(param.name):
            entry = entries[position]
            try:
                captures = entry.matcher.match(param)  # type: ignore[union-attr]
            except MatchError as exc:
                raise self.fail(entry, ("match",), exc.message) from None
            if captures is not None:
                found.append((entry, captures))
                self.used.add(entry.name)
        return found

    def plan(self, tensors: tuple[Any, ...]) -> Plan:
        rows: list[Row] = []
        unmatched: list[str] = []
        conflicts: list[Conflict] = []
        frozen: list[Frozen] = []
        group_of: dict[Any, int] = {}
        group_by_settled: dict[int, int] = {}  # settled objects live in self.settled all along
        members: list[list[int]] = []
        for info in self.params:
            layer = self.layers[info.index]
            outcome = self.settle(info)
            if isinstance(outcome, Conflict):
                conflicts.append(dataclasses.replace(outcome, param=info.name))
                rows.append(Row(info, layer, "conflict", note=conflicts[-1].message))
                continue
            if isinstance(outcome, Row):
                rows.append(outcome)
                if outcome.status == "unmatched":
                    unmatched.append(info.name)
                elif outcome.status == "frozen":
                    frozen.append(Frozen(info.name, outcome.note))
                continue
            claim, modifiers, captures, settled, matched_as = outcome
            refusal = refused_shape(self.rules, settled.optimizer, info.shape)
            if refusal:
                specs = {e.name: e for e in (*self.rules.rules, *self.rules.modifiers)}
                by = tuple(n for n in (claim, *modifiers) if n and specs[n].optimizer == settled.optimizer)
                conflicts.append(Conflict(info.name, "optimizer", by, settled.optimizer, detail=refusal))
                rows.append(Row(info, layer, "conflict", note=conflicts[-1].message))
                continue
            group = group_by_settled.get(id(settled))
            if group is None:  # first parameter with these settings (or equal ones from other rules)
                group = group_by_settled[id(settled)] = group_of.setdefault(settled.key, len(group_of))
            if group == len(members):
                members.append([])
            members[group].append(len(rows))
            rows.append(Row(info, layer, "trainable", claim, modifiers, captures, settled, group,
                            "" if claim else "claimed by no rule; given the defaults", matched_as))
            if claim is None:
                unmatched.append(info.name)
        if self.compiled.fallback is not None and any(r.rule == self.compiled.fallback.name for r in rows):
            self.used.add(self.compiled.fallback.name)
        if self.rules.optimizers:
            # The groups of one optimizer are next to each other, in the order the optimizers are
            # named: the combined optimizer's param_groups are the plan's groups, in its order.
            order = {name: i for i, name in enumerate([DEFAULT_OPTIMIZER, *self.rules.optimizers])}
            members.sort(key=lambda ps: order[rows[ps[0]].settled.optimizer])  # type: ignore[union-attr]
            for index, positions in enumerate(members):
                for p in positions:
                    rows[p] = rows[p]._replace(group=index)
        groups = []
        seen_names: set[str] = set()
        for index, positions in enumerate(members):
            first = rows[positions[0]].settled
            assert first is not None
            by = dict.fromkeys(n for p in positions for n in (rows[p].rule or "(defaults)", *rows[p].modifiers))
            groups.append(Group(index, first.lr, first.lr_scale, first.weight_decay, first.options,
                                tuple(rows[p].info.name for p in positions),
                                sum(rows[p].info.numel for p in positions), tuple(by),
                                group_name(tuple(by), seen_names), first.optimizer, first.lr_schedule))
        phases = self.phase_effects([r for r in rows if r.status == "trainable"])
        # Rules first, then modifiers, each by name: the file's order never shows in a plan.
        names = sorted(r.name for r in self.rules.rules) + sorted(m.name for m in self.rules.modifiers)
        return Plan(
            source=self.rules.path,
            base_lr=self.base_lr,
            base_weight_decay=self.base_wd,
            unmatched_mode=self.rules.unmatched,
            rows=tuple(rows),
            groups=tuple(groups),
            unmatched=tuple(unmatched),
            conflicts=tuple(conflicts),
            frozen=tuple(frozen),
            unused_rules=tuple(n for n in names if n not in self.used),
            zero_lr=tuple(rows[p].info.name for g in groups if g.lr == 0.0 for p in members[g.index]),
            base_options=self.base_options,
            num_layers=self.num_layers,
            phases=phases,
            tensors=tensors,
            schedule_vars=dict(self.rules.vars) if any(g.lr_schedule for g in groups) else {},
        )

    def phase_effects(self, grouped: list[Row]) -> tuple[PhaseEffect, ...]:
        effects = []
        for k, phase in enumerate(self.rules.phases):
            found: dict[str, tuple[str, ...]] = {}
            for field in ("freeze", "unfreeze"):
                spec = getattr(phase, field)
                if spec is None:
                    found[field] = ()
                    continue
                matcher = self.compiled.phases[k][field == "unfreeze"]
                assert matcher is not None  # compiled wherever the spec is given
                try:
                    found[field] = tuple(r.info.name for r in grouped if matcher.match(r.info) is not None)
                except MatchError as exc:
                    raise self.fail_at(("phases", k, field), exc.message) from None
            effects.append(PhaseEffect(k, phase.from_epoch, phase.from_step, found["freeze"], found["unfreeze"]))
        return tuple(effects)

    def settle(self, info: ParamInfo) -> Row | Conflict | _Claimed:
        compiled = self.compiled
        layer = self.layers[info.index]
        # A tied tensor is matched under each of its names; the claim step sees every candidate.
        views = [info._replace(name=n) for n in info.names] if info.aliases else [info]
        candidates = [Candidate(view.name, entry, found) for view in views
                      for entry, found in self.matching(compiled.claiming, compiled.claim_index, view)]
        if info.aliases:
            mods_by_name: dict[str, tuple[Entry, Captures]] = {}
            for view in views:
                for entry, found in self.matching(compiled.modifiers, compiled.modifier_index, view):
                    mods_by_name.setdefault(entry.name, (entry, found))
            modifiers = sorted(mods_by_name.values(), key=lambda m: m[0].order)
        else:
            modifiers = self.matching(compiled.modifiers, compiled.modifier_index, info)
        if not info.requires_grad:
            return Row(info, layer, "frozen", note=MODEL_FROZEN)
        chosen = choose_claim(candidates, compiled.beats)
        if isinstance(chosen, Conflict):
            return dataclasses.replace(chosen, param=info.name)
        claim = (chosen.entry, chosen.captures) if chosen else None
        matched_as = chosen.name if chosen else ""
        if claim is None and compiled.fallback is not None:
            claim = (compiled.fallback, {})
        if claim is None and self.rules.unmatched == "error":
            return Row(info, layer, "unmatched", note="claimed by no rule")
        entries = [claim, *modifiers] if claim else modifiers
        # What depends only on which entries matched is worked out once per combination of them.
        which = tuple([e.key for e, _ in entries])
        combo = self.combos.get(which)
        if combo is None:
            combo = self.combos[which] = self.combination(claim, modifiers)
        reads, modifier_names, frozen_note = combo
        if frozen_note:
            return Row(info, layer, "frozen", claim[0].name if claim else None, note=frozen_note)
        captures: Captures = {}
        for _, found in entries:
            if found:
                captures.update(found)
        # The settings depend only on the entries, their captures and the variables their formulas read.
        key = (which, tuple([tuple(c.items()) for _, c in entries]) if captures else (),
               tuple([self.variable(n, info, layer) for n in reads]) if reads else ())
        settled = self.settled.get(key)
        if settled is None:
            settled = self.settle_values(info, claim, modifiers)
            self.settled[key] = settled
        if isinstance(settled, Conflict):
            return settled  # plan() names it after this parameter
        return _Claimed(claim[0].name if claim else None, modifier_names, captures, settled, matched_as)

    def combination(self, claim: tuple[Entry, Captures] | None,
                    modifiers: list[tuple[Entry, Captures]]) -> tuple[tuple[str, ...], tuple[str, ...], str]:
        """For one combination of matching entries: the variables their formulas read, the modifiers'
        names, and the note of a freeze (empty when none of them freezes)."""
        entries = [claim, *modifiers] if claim else modifiers
        reads = tuple(sorted(frozenset().union(*(e.formulas for e, _ in entries))))
        freezers = [e.name for e, _ in entries if e.freeze]
        note = "frozen by " + ", ".join(f"'{n}'" for n in freezers) if freezers else ""
        return reads, tuple(e.name for e, _ in modifiers), note

    def variable(self, name: str, info: ParamInfo, layer: int | None) -> Any:
        if name == "layer":
            return layer
        if name == "depth":
            return None if layer is None else self.num_layers - 1 - layer
        if name == "index":
            return info.index
        if name == "ndim":
            return info.ndim
        if name == "numel":
            return info.numel
        if name in SHAPE_VARIABLES:
            return SHAPE_VARIABLES[name](info)
        return name  # the others are the same for every parameter, or captures (already in the key)

    def env(self, info: ParamInfo, captures: Captures) -> dict[str, Any]:
        env: dict[str, Any] = {
            "base_lr": self.base_lr,
            "base_weight_decay": self.base_wd,
            "num_layers": self.num_layers,
            "index": info.index,
            "num_tensors": len(self.params),
            "ndim": info.ndim,
            "numel": info.numel,
            "fan_in": info.fan_in,
            "fan_out": info.fan_out,
        }
        env.update(zip(DIM_NAMES, info.shape))
        layer = self.layers[info.index]
        if layer is not None:
            env["layer"] = layer
            env["depth"] = self.num_layers - 1 - layer
        env.update(self.rules.vars)
        env.update(captures)
        return env

    def value(self, entry: Entry, where: tuple[str, ...], value: Any, info: ParamInfo, env: Mapping[str, Any],
              steps: list[Step]) -> Any:
        if not isinstance(value, Formula):
            steps.append(Step(entry.name, ".".join(where), None, {}, value))
            return value
        missing = value.names - env.keys()
        if missing:
            name = sorted(missing)[0]
            if name in DIM_NAMES:
                why = (f"parameter '{info.name}' has shape {list(info.shape)}, so no {name}; add "
                       f"'ndim: [{int(name[3:]) + 1}, ...]' (or more) to the match, or use fan_in / fan_out")
            elif name in ("layer", "depth"):
                why = f"parameter '{info.name}' has no layer: it matches none of layers.patterns; add one that covers it"
            else:
                why = f"regex group '{name}' captured nothing for parameter '{info.name}'"
            spot = re.search(rf"\b{name}\b", value.text)
            raise self.fail(entry, where, why, value, spot.start() if spot else None)
        names = sorted(value.names)
        key = (value.text, tuple(env[n] for n in names))
        result = self.formula_cache.get(key)
        if result is None:
            shown = ", ".join(f"{n}={env[n]!r}" for n in names)
            try:
                result = value.evaluate(env)
            except FormulaError as exc:
                raise self.fail(entry, where, f"{exc.message} for parameter '{info.name}' ({shown})",
                                value, exc.offset) from None
            if not math.isfinite(result) or result < 0:
                raise self.fail(entry, where, f"gives {result} for parameter '{info.name}' ({shown}); "
                                "the value must be a finite number >= 0", value, 0)
            self.formula_cache[key] = result
        steps.append(Step(entry.name, ".".join(where), value.text, dict(zip(names, key[1])), result))
        return result

    def chosen(self, info: ParamInfo, field: str, claim: tuple[Entry, Captures] | None,
               modifiers: list[tuple[Entry, Captures]], default: Any) -> Any:
        """``optimizer`` or ``lr_schedule``: a modifier's replaces the claiming rule's; two modifiers that
        disagree are a conflict."""
        given = {e.name: getattr(e.spec, field) for e, _ in modifiers if getattr(e.spec, field) is not None}
        if len(set(given.values())) > 1:
            return Conflict(info.name, "modifiers", tuple(given), field)
        if given:
            return next(iter(given.values()))
        if claim is not None and getattr(claim[0].spec, field) is not None:
            return getattr(claim[0].spec, field)
        return default

    def settle_values(self, info: ParamInfo, claim: tuple[Entry, Captures] | None,
                      modifiers: list[tuple[Entry, Captures]]) -> Settled | Conflict:
        steps: list[Step] = []
        route = self.chosen(info, "optimizer", claim, modifiers, DEFAULT_OPTIMIZER)
        schedule = self.chosen(info, "lr_schedule", claim, modifiers, None)
        for found in (route, schedule):
            if isinstance(found, Conflict):
                return found
        named = self.rules.optimizers.get(route)
        # A named optimizer's lr, weight_decay and options are the defaults of what is routed to it.
        base_lr = named.lr if named is not None and named.lr is not None else self.base_lr
        base_wd = named.weight_decay if named is not None and named.weight_decay is not None else self.base_wd
        scale, absolute, wd = 1.0, None, base_wd
        options = dict(named.options if named is not None else self.base_options)
        bases = {"base_lr": base_lr, "base_weight_decay": base_wd}
        if claim is not None:
            entry, captures = claim
            spec, env = entry.spec, {**self.env(info, captures), **bases}
            if spec.lr is not None:
                absolute = self.value(entry, ("lr",), spec.lr, info, env, steps)
            elif spec.lr_mult is not None:
                scale = self.value(entry, ("lr_mult",), spec.lr_mult, info, env, steps)
            if spec.weight_decay is not None:
                wd = self.value(entry, ("weight_decay",), spec.weight_decay, info, env, steps)
            elif spec.weight_decay_mult is not None:
                wd = base_wd * self.value(entry, ("weight_decay_mult",), spec.weight_decay_mult, info, env,
                                          steps)
            for key, raw in (spec.options or {}).items():
                options[key] = self.value(entry, ("options", key), raw, info, env, steps)

        set_by: dict[str, dict[str, Any]] = {}
        lr_mult = wd_mult = 1.0
        for entry, found in modifiers:
            spec, env = entry.spec, {**self.env(info, found), **bases}
            for field in SETTING_FIELDS:
                raw = getattr(spec, field)
                if raw is None:
                    continue
                value = self.value(entry, (field,), raw, info, env, steps)
                if field == "lr_mult":
                    lr_mult *= value
                elif field == "weight_decay_mult":
                    wd_mult *= value
                else:
                    set_by.setdefault(field, {})[entry.name] = value
            for key, raw in (spec.options or {}).items():
                set_by.setdefault(f"options.{key}", {})[entry.name] = self.value(
                    entry, ("options", key), raw, info, env, steps)
        for setting, values in set_by.items():
            if len({hashable(v) for v in values.values()}) > 1:
                return Conflict(info.name, "modifiers", tuple(values), setting)
            value = next(iter(values.values()))
            if setting == "lr":
                absolute = value
            elif setting == "weight_decay":
                wd = value
            else:
                options[setting.removeprefix("options.")] = value

        if absolute is not None:
            lr = absolute * lr_mult
            lr_scale = lr / self.base_lr
        else:
            lr_scale = scale * lr_mult
            lr = base_lr * lr_scale
            if base_lr != self.base_lr:  # lr_scale stays relative to defaults.lr, the plan's base_lr
                lr_scale = lr / self.base_lr
        wd *= wd_mult
        # Each value is finite, but their product may not be (1e300 x 1e10): the final ones are checked.
        if not (math.isfinite(lr) and math.isfinite(lr_scale) and math.isfinite(wd)):
            entry = claim[0] if claim is not None else modifiers[0][0]
            names = ", ".join(dict.fromkeys(e.name for e, _ in ([claim] if claim else []) + modifiers))
            raise self.fail(entry, (), f"the settings of {names} give parameter '{info.name}' lr {lr} (x{lr_scale} "
                            f"base) and weight decay {wd}; the final values must be finite: the multipliers "
                            "overflow")
        return Settled(lr, lr_scale, wd, options, tuple(steps), route, schedule)

