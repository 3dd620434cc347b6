"""Resolution: a compiled rule set and a model's parameters in, a :class:`~lrrules.plan.Plan` out.

For each parameter (under each of its names, for tied weights): which claiming rules match, which
modifiers match; then its settings, with formulas evaluated once per distinct set of the variables
they read; then the groups, one per distinct final setting, in order of first appearance. Nothing
here depends on the order of the rules or modifiers in the file.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import FormulaError, RuleError, RuleFileError
from .formula import Formula
from .language import Modifier, Rule, RuleSet
from .layers import Layering, assign
from .matching import Captures, Matcher, MatchError, compile_matcher
from .model import ParamInfo
from .plan import Assignment, Conflict, Frozen, Group, Plan, Step

if TYPE_CHECKING:
    import torch

MODEL_FROZEN = "requires_grad=False in the model"


def resolve(rules: RuleSet, model: torch.nn.Module) -> Plan:
    """Resolve ``rules`` against ``model`` (bare, compiled or DDP-wrapped: names are unwrapped)."""
    from .model import collect

    params, tensors = collect(model)
    return resolve_params(rules, params, tensors, model)


def resolve_params(
    rules: RuleSet,
    params: Sequence[ParamInfo],
    tensors: Sequence[Any] = (),
    model: torch.nn.Module | None = None,
) -> Plan:
    """Resolve ``rules`` against parameters described by :class:`ParamInfo`.

    ``model`` is needed only by ``layers: {by: timm}``; ``tensors`` only by ``Plan.param_groups``.
    """
    layering = assign(rules.layers, params, model)
    return _Resolver(rules, params, layering).plan(tuple(tensors))


@dataclass(frozen=True)
class _Entry:
    kind: str  # "rules" or "modifiers"
    i: int
    spec: Rule | Modifier
    matcher: Matcher | None

    @property
    def name(self) -> str:
        return self.spec.name


def _compile(rules: RuleSet) -> tuple[list[_Entry], _Entry | None, list[_Entry]]:
    if rules._compiled is not None:
        return rules._compiled  # type: ignore[no-any-return]
    claiming: list[_Entry] = []
    fallback: _Entry | None = None
    modifiers: list[_Entry] = []
    for i, rule in enumerate(rules.rules):
        if rule.fallback:
            fallback = _Entry("rules", i, rule, None)
        else:
            claiming.append(_Entry("rules", i, rule, compile_matcher(rule.match)))
    for i, mod in enumerate(rules.modifiers):
        modifiers.append(_Entry("modifiers", i, mod, compile_matcher(mod.match)))
    # Sorting by name makes every later loop independent of the file's order.
    claiming.sort(key=lambda e: e.name)
    modifiers.sort(key=lambda e: e.name)
    rules._compiled = (claiming, fallback, modifiers)
    return rules._compiled  # type: ignore[no-any-return]


class _Resolver:
    def __init__(self, rules: RuleSet, params: Sequence[ParamInfo], layering: Layering) -> None:
        self.rules = rules
        self.params = params
        self.layers, self.num_layers = layering
        self.claiming, self.fallback, self.modifiers = _compile(rules)
        self.base_lr = rules.defaults.lr
        self.base_wd = rules.defaults.weight_decay
        self.used: set[str] = set()
        self.cache: dict[tuple[str, tuple[Any, ...]], float] = {}
        self.steps: list[Step] = []

    def fail(self, entry: _Entry, where: tuple[str | int, ...], message: str, formula: Formula | None = None,
             offset: int | None = None) -> RuleFileError:
        loc = (entry.kind, entry.i, *where)
        expr = formula.text if formula is not None else ""
        return RuleFileError([RuleError(message, self.rules.locate(loc, offset), loc, expr, offset)])

    def matches(self, entry: _Entry, param: ParamInfo) -> Captures | None:
        assert entry.matcher is not None
        try:
            found = entry.matcher.match(param)
        except MatchError as exc:
            raise self.fail(entry, ("match",), exc.message) from None
        if found is not None:
            self.used.add(entry.name)
        return found

    def plan(self, tensors: tuple[Any, ...]) -> Plan:
        assignments: list[Assignment] = []
        unmatched: list[str] = []
        conflicts: list[Conflict] = []
        frozen: list[Frozen] = []
        for info in self.params:
            outcome = self.settle(info)
            if isinstance(outcome, Conflict):
                conflicts.append(outcome)
                outcome = self.blank(info, "conflict", outcome.message)
            assignments.append(outcome)
            if outcome.status == "unmatched" or (outcome.status == "trainable" and outcome.rule is None):
                unmatched.append(info.name)
            elif outcome.status == "frozen":
                frozen.append(Frozen(info.name, outcome.note))
        if self.fallback is not None and any(a.rule == self.fallback.name for a in assignments):
            self.used.add(self.fallback.name)
        groups, assignments = _group(assignments)
        # Rules first, then modifiers, each by name: the file's order never shows in a plan.
        names = sorted(r.name for r in self.rules.rules) + sorted(m.name for m in self.rules.modifiers)
        return Plan(
            source=self.rules.path,
            base_lr=self.base_lr,
            base_weight_decay=self.base_wd,
            unmatched_mode=self.rules.unmatched,
            params=tuple(assignments),
            groups=groups,
            unmatched=tuple(unmatched),
            conflicts=tuple(conflicts),
            frozen=tuple(frozen),
            unused_rules=tuple(n for n in names if n not in self.used),
            zero_lr=tuple(a.name for a in assignments if a.lr == 0.0),
            base_options=self.rules.defaults.options,
            tensors=tensors,
        )

    def blank(self, info: ParamInfo, status: str, note: str = "", rule: str | None = None) -> Assignment:
        return Assignment(info.name, info.shape, info.module, info.index, self.layers[info.index], status,  # type: ignore[arg-type]
                          rule=rule, aliases=info.aliases, note=note)

    def settle(self, info: ParamInfo) -> Assignment | Conflict:
        views = [info] if not info.aliases else [dataclasses.replace(info, name=n) for n in info.names]
        claims_per_name: list[list[tuple[_Entry, Captures]]] = []
        mods: dict[str, tuple[_Entry, Captures]] = {}
        for view in views:
            claims = [(e, c) for e in self.claiming if (c := self.matches(e, view)) is not None]
            claims_per_name.append(claims)
            for e in self.modifiers:
                if e.name not in mods and (c := self.matches(e, view)) is not None:
                    mods[e.name] = (e, c)
        if not info.requires_grad:
            return self.blank(info, "frozen", MODEL_FROZEN)
        for claims in claims_per_name:
            if len(claims) > 1:
                return Conflict(info.name, "rules", tuple(e.name for e, _ in claims))
        chosen = [claims[0] if claims else None for claims in claims_per_name]
        if len({c[0].name if c else None for c in chosen}) > 1:
            names = tuple(c[0].name if c else (self.fallback.name if self.fallback else "(no rule)") for c in chosen)
            return Conflict(info.name, "tied", tuple(dict.fromkeys(names)))
        claim = chosen[0]
        if claim is None and self.fallback is not None:
            claim = (self.fallback, {})
        if claim is None and self.rules.unmatched == "error":
            return self.blank(info, "unmatched", "claimed by no rule")
        modifiers = [mods[name] for name in sorted(mods)]
        freezers = [e.name for e, _ in ([claim] if claim else []) + modifiers if e.spec.freeze]
        if freezers:
            return self.blank(info, "frozen", "frozen by " + ", ".join(f"'{n}'" for n in freezers),
                              rule=claim[0].name if claim else None)
        return self.settings(info, claim, modifiers)

    def env(self, info: ParamInfo, captures: Captures) -> dict[str, Any]:
        env: dict[str, Any] = {
            "base_lr": self.base_lr,
            "base_weight_decay": self.base_wd,
            "num_layers": self.num_layers,
            "index": info.index,
            "num_tensors": len(self.params),
            "ndim": info.ndim,
            "numel": info.numel,
        }
        layer = self.layers[info.index]
        if layer is not None:
            env["layer"] = layer
            env["depth"] = self.num_layers - 1 - layer
        env.update(captures)
        return env

    def value(self, entry: _Entry, where: tuple[str, ...], value: Any, info: ParamInfo, env: Mapping[str, Any]) -> Any:
        if not isinstance(value, Formula):
            self.steps.append(Step(entry.name, ".".join(where), None, {}, value))
            return value
        missing = value.names - env.keys()
        if missing:
            name = sorted(missing)[0]
            if name in ("layer", "depth"):
                why = f"parameter '{info.name}' has no layer: it matches none of layers.patterns; add one that covers it"
            else:
                why = f"regex group '{name}' captured nothing for parameter '{info.name}'"
            spot = re.search(rf"\b{name}\b", value.text)
            raise self.fail(entry, where, why, value, spot.start() if spot else None)
        key = (value.text, tuple(env[n] for n in sorted(value.names)))
        result = self.cache.get(key)
        if result is not None:
            self.steps.append(Step(entry.name, ".".join(where), value.text, dict(zip(sorted(value.names), key[1])),
                                   result))
            return result
        if result is None:
            try:
                result = value.evaluate(env)
            except FormulaError as exc:
                shown = ", ".join(f"{n}={env[n]!r}" for n in sorted(value.names))
                raise self.fail(entry, where, f"{exc.message} for parameter '{info.name}' ({shown})",
                                value, exc.offset) from None
            if not math.isfinite(result) or result < 0:
                shown = ", ".join(f"{n}={env[n]!r}" for n in sorted(value.names))
                raise self.fail(entry, where, f"gives {result} for parameter '{info.name}' ({shown}); "
                                "the value must be a finite number >= 0", value, 0)
            self.cache[key] = result
        self.steps.append(Step(entry.name, ".".join(where), value.text, dict(zip(sorted(value.names), key[1])), result))
        return result

    def settings(self, info: ParamInfo, claim: tuple[_Entry, Captures] | None,
                 modifiers: list[tuple[_Entry, Captures]]) -> Assignment | Conflict:
        self.steps = []
        scale, absolute, wd = 1.0, None, self.base_wd
        options = dict(self.rules.defaults.options)
        if claim is not None:
            entry, captures = claim
            spec, env = entry.spec, self.env(info, captures)
            if spec.lr is not None:
                absolute = self.value(entry, ("lr",), spec.lr, info, env)
            elif spec.lr_mult is not None:
                scale = self.value(entry, ("lr_mult",), spec.lr_mult, info, env)
            if spec.weight_decay is not None:
                wd = self.value(entry, ("weight_decay",), spec.weight_decay, info, env)
            elif spec.weight_decay_mult is not None:
                wd = self.base_wd * self.value(entry, ("weight_decay_mult",), spec.weight_decay_mult, info, env)
            for key, raw in (spec.options or {}).items():
                options[key] = self.value(entry, ("options", key), raw, info, env)

        set_by: dict[str, dict[str, Any]] = {}
        lr_mult = wd_mult = 1.0
        for entry, captures in modifiers:
            spec, env = entry.spec, self.env(info, captures)
            if spec.lr is not None:
                set_by.setdefault("lr", {})[entry.name] = self.value(entry, ("lr",), spec.lr, info, env)
            if spec.lr_mult is not None:
                lr_mult *= self.value(entry, ("lr_mult",), spec.lr_mult, info, env)
            if spec.weight_decay is not None:
                set_by.setdefault("weight_decay", {})[entry.name] = self.value(
                    entry, ("weight_decay",), spec.weight_decay, info, env)
            if spec.weight_decay_mult is not None:
                wd_mult *= self.value(entry, ("weight_decay_mult",), spec.weight_decay_mult, info, env)
            for key, raw in (spec.options or {}).items():
                set_by.setdefault(f"options.{key}", {})[entry.name] = self.value(
                    entry, ("options", key), raw, info, env)
        for setting, values in set_by.items():
            if len({_hashable(v) for v in values.values()}) > 1:
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
            lr = self.base_lr * lr_scale
        return Assignment(
            info.name, info.shape, info.module, info.index, self.layers[info.index], "trainable",
            rule=claim[0].name if claim else None,
            modifiers=tuple(e.name for e, _ in modifiers),
            captures={**(claim[1] if claim else {}), **{k: v for _, c in modifiers for k, v in c.items()}},
            lr=lr, lr_scale=lr_scale, weight_decay=wd * wd_mult, options=options, aliases=info.aliases,
            note="" if claim else "claimed by no rule; given the defaults",
            steps=tuple(self.steps),
        )


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _group(assignments: list[Assignment]) -> tuple[tuple[Group, ...], list[Assignment]]:
    keys: dict[Any, int] = {}
    members: list[list[Assignment]] = []
    out = []
    for a in assignments:
        if a.status != "trainable":
            out.append(a)
            continue
        key = (a.lr, a.lr_scale, a.weight_decay, tuple(sorted((k, _hashable(v)) for k, v in a.options.items())))
        index = keys.setdefault(key, len(keys))
        if index == len(members):
            members.append([])
        a = dataclasses.replace(a, group=index)
        members[index].append(a)
        out.append(a)
    groups = []
    for index, group in enumerate(members):
        first = group[0]
        rules = dict.fromkeys(n for a in group for n in ((a.rule or "(defaults)"), *a.modifiers))
        groups.append(Group(index, first.lr, first.lr_scale, first.weight_decay, dict(first.options),  # type: ignore[arg-type]
                            tuple(a.name for a in group), sum(a.numel for a in group), tuple(rules)))
    return tuple(groups), out
