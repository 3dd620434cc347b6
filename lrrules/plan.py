"""A :class:`Plan`: one :class:`Assignment` per parameter, the fewest optimizer groups, every problem;
plain immutable data. Only :meth:`Plan.param_groups`, :meth:`Plan.apply_freeze` and
:meth:`Plan.apply_phase` touch tensors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from .errors import PlanProblemsError, ResolveError, printable
from .params import ParamInfo, unwrap

Status = Literal["trainable", "frozen", "unmatched", "conflict"]


@dataclass(frozen=True, slots=True)
class Step:
    """One value ``entry`` gave a parameter's ``setting``, by ``formula`` (``None``: a number) from ``variables``."""

    entry: str
    setting: str
    formula: str | None
    variables: Mapping[str, Any]
    value: Any

    def to_dict(self) -> dict[str, Any]:
        return _json(self, "entry setting formula variables value")


class Assignment(NamedTuple):
    """One parameter's outcome; the settings are ``None`` unless it trains (a named tuple: ~100k of them)."""

    name: str
    shape: tuple[int, ...]
    module: str | None
    index: int  # type: ignore[assignment]  # a field, where tuple has a method
    layer: int | None
    status: Status
    rule: str | None = None
    modifiers: tuple[str, ...] = ()
    captures: Mapping[str, int | str] = {}  # never mutated
    lr: float | None = None
    lr_scale: float | None = None
    weight_decay: float | None = None
    options: Mapping[str, Any] = {}
    group: int | None = None
    aliases: tuple[str, ...] = ()
    note: str = ""
    steps: tuple[Step, ...] = ()
    trains: bool = True  # False while a training phase freezes it (it keeps its group)
    matched_as: str | None = None  # the name its rule matched (a tied tensor has several); None: none claimed it

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def to_dict(self) -> dict[str, Any]:
        return _json(self, "name aliases shape numel module index layer status group rule modifiers captures lr "
                           "lr_scale weight_decay options note trains matched_as steps")


@dataclass(frozen=True)
class Group:
    """One optimizer param group: parameters whose final settings are equal."""

    index: int
    lr: float
    lr_scale: float
    weight_decay: float
    options: Mapping[str, Any]
    params: tuple[str, ...]
    numel: int
    rules: tuple[str, ...]
    #: Unique and readable (``head+no-decay``, ``head#2``): the param group's ``name`` (Lightning's LR monitor).
    name: str = ""
    optimizer: str = "default"  # the named optimizer it goes to
    lr_schedule: str | None = None  # the formula of step scaling its lr (see lrrules.schedules)

    def to_dict(self) -> dict[str, Any]:
        return _json(self, "index name lr lr_scale weight_decay options params numel rules optimizer lr_schedule")


@dataclass(frozen=True)
class Conflict:
    """A parameter that cannot get one setting; ``rules`` names every entry involved."""

    param: str
    kind: Literal["rules", "modifiers", "tied", "optimizer"]
    rules: tuple[str, ...]
    setting: str | None = None
    names: tuple[str, ...] = ()  # for "tied": the name each of ``rules`` matched, pairwise
    detail: str = ""  # for "optimizer": why the optimizer it is routed to cannot take it

    @property
    def message(self) -> str:
        names = " and ".join(f"'{r}'" for r in self.rules)
        if self.kind == "rules":
            return f"'{self.param}' is claimed by {len(self.rules)} rules: {names}; narrow their matches"
        if self.kind == "optimizer":
            by = f" by {names}" if self.rules else ""
            return (f"'{self.param}' is routed{by} to optimizer '{self.setting}', {self.detail}; route it to "
                    "another optimizer (`optimizer: NAME` on a rule or modifier that matches it)")
        if self.kind == "modifiers":
            return f"'{self.param}': modifiers {names} set {self.setting} to different values"
        claims = " and ".join(f"'{n}' by rule '{r}'" for n, r in zip(self.names, self.rules))
        return (f"'{self.param}' is one tensor under several names (tied weights), claimed as {claims}; "
                "make one rule claim it")

    def to_dict(self) -> dict[str, Any]:
        return _json(self, "param kind rules setting names message")


@dataclass(frozen=True)
class Frozen:
    """A parameter out of training, and why: a rule's ``freeze`` or ``requires_grad=False`` already."""

    param: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return _json(self, "param reason")


@dataclass(frozen=True)
class PhaseEffect:
    """A training phase resolved: when it starts, which grouped parameters it freezes and unfreezes."""

    index: int
    from_epoch: int | None
    from_step: int | None
    freeze: tuple[str, ...]
    unfreeze: tuple[str, ...]

    def started(self, epoch: int | None, step: int | None) -> bool:
        at, start = (epoch, self.from_epoch) if self.from_epoch is not None else (step, self.from_step)
        return at is not None and start is not None and at >= start

    when = property(lambda self: f"epoch {self.from_epoch}" if self.from_epoch is not None else f"step {self.from_step}")

    def to_dict(self) -> dict[str, Any]:
        return _json(self, "index from_epoch from_step freeze unfreeze")


@dataclass(frozen=True)
class Plan:
    """>>> optimizer = torch.optim.AdamW(lrrules.resolve("rules.yaml", model).param_groups())  # doctest: +SKIP"""

    source: str
    base_lr: float
    base_weight_decay: float
    unmatched_mode: Literal["error", "defaults"]
    params: tuple[Assignment, ...] = field(repr=False)  # every parameter's, in registration order
    groups: tuple[Group, ...]
    unmatched: tuple[str, ...]
    conflicts: tuple[Conflict, ...]
    frozen: tuple[Frozen, ...]
    unused_rules: tuple[str, ...]
    zero_lr: tuple[str, ...]
    base_options: Mapping[str, Any] = field(default_factory=dict)
    num_layers: int = 0  # under the rule file's `layers`
    phases: tuple[PhaseEffect, ...] = ()
    model: Any = field(default=None, repr=False, compare=False)  # a weak reference to the module resolved
    phase_frozen: frozenset[str] = frozenset()
    when: str = ""  # the epoch or step the plan is shown at (see at())
    tensors: tuple[Any, ...] = field(default=(), repr=False, compare=False)
    cautions: tuple[str, ...] = ()  # what the resolver saw that is likely a mistake (see warnings())
    schedule_vars: Mapping[str, float] = field(default_factory=dict)  # the vars lr_schedule formulas read
    infos: tuple[ParamInfo, ...] = field(default=(), repr=False)  # the parameters as resolved, by index

    def __getstate__(self) -> dict[str, Any]:
        # A copy is the plan's data only (copied tensors would be trained by no model): names-only, refused as such.
        return {**self.__dict__, "model": None, "tensors": ()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def frozen_at(self, epoch: int | None = None, step: int | None = None) -> frozenset[str]:
        """The grouped parameters the phases started by ``epoch`` (or ``step``) freeze, applied in order."""
        frozen: set[str] = set()
        for phase in self.phases:
            if phase.started(epoch, step):
                frozen.update(phase.freeze)
                frozen.difference_update(phase.unfreeze)
        return frozenset(frozen)

    def at(self, epoch: int | None = None, step: int | None = None) -> Plan:
        """This plan at ``epoch`` (or ``step``): the same groups, what the phases freeze ``trains=False``."""
        when = ", ".join(f"{k} {v}" for k, v in (("epoch", epoch), ("step", step)) if v is not None)
        frozen = self.frozen_at(epoch, step)
        params = tuple(a._replace(trains=a.status == "trainable" and a.name not in frozen) for a in self.params)
        return dataclasses.replace(self, params=params, phase_frozen=frozen, when=when)

    def apply_phase(self, epoch: int | None = None, step: int | None = None) -> frozenset[str]:
        """Set ``requires_grad`` as the phases say at ``epoch`` (or ``step``, alone: a resumed run is in
        the same state); return the names frozen. A frozen tensor keeps its group, its gradient ``None``.

        >>> plan.apply_phase(epoch=epoch)                          # doctest: +SKIP
        """
        frozen = self.frozen_at(epoch, step)
        _check_tensors_current(self)
        for a in self.params:
            if a.status == "trainable":
                tensor = self.tensors[a.index]
                tensor.requires_grad_(a.name not in frozen)
                if a.name in frozen:
                    # a zero gradient still moves it under momentum or weight decay; None is skipped
                    tensor.grad = None
        return frozen

    @property
    def ok(self) -> bool:
        """True when every trainable parameter has exactly one setting."""
        return not self.conflicts and not (self.unmatched and self.unmatched_mode == "error")

    def problems(self) -> list[str]:
        """One line per unmatched or conflicting parameter (what stops :meth:`param_groups`)."""
        lines = [c.message for c in self.conflicts]
        if self.unmatched_mode == "error":
            lines += [f"'{name}' is claimed by no rule; add a rule or a fallback" for name in self.unmatched]
        return lines

    def warnings(self) -> list[str]:
        """What resolves but is likely a mistake: the cautions, unused rules and phases, lr = 0."""
        lines = list(self.cautions)
        lines += [f"rule '{r}' matches no parameter" for r in self.unused_rules]
        lines += [f"phase {p.index} ({p.when}) matches no parameter" for p in self.phases
                  if not p.freeze and not p.unfreeze]
        lines += [f"'{n}' resolves to lr = 0; use 'freeze: true' to take it out of training" for n in self.zero_lr]
        return lines

    def param_groups(self, lr_scale: bool = False, optimizer: str | None = None) -> list[dict[str, Any]]:
        """The optimizer param groups (:class:`PlanProblemsError` listing every problem first); ``lr`` the
        group's final lr, or with ``lr_scale=True`` timm's convention (the base lr and ``lr_scale``);
        with several optimizers one at a time, ``optimizer="muon"`` (``"default"``: ``optimizer:``).

        >>> torch.optim.AdamW(plan.param_groups())                   # doctest: +SKIP
        """
        return groups_of(self, lr_scale, optimizer)

    @property
    def fingerprint(self) -> str:
        """A hash of the ordered group layout (names, shapes): a state saved under another is refused on resume."""
        shapes = {a.name: list(a.shape) for a in self.params}
        text = json.dumps([[list(g.params), [shapes[n] for n in g.params]] for g in self.groups], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def group_lrs(self) -> list[float]:
        """Each group's lr, in group order: ``OneCycleLR(optimizer, max_lr=plan.group_lrs(), ...)``."""
        return [g.lr for g in self.groups]

    def apply_freeze(self) -> int:
        """Set ``requires_grad=False`` where the rules freeze; how many changed (a names-only plan is refused)."""
        _need_tensors(self)
        if self.frozen:  # a stale plan would freeze tensors the model no longer trains
            _check_tensors_current(self)
        changed = 0
        for a in self.params:
            tensor = self.tensors[a.index]
            if a.status == "frozen" and tensor.requires_grad:
                tensor.requires_grad_(False)
                changed += 1
        return changed

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: ``groups``, ``params``, ``unmatched``, ``conflicts``, ``frozen``, ``unused_rules``."""
        return {**_json(self, "source base_lr base_weight_decay base_options num_layers ok groups params unmatched "
                              "conflicts frozen unused_rules zero_lr"), "warnings": list(self.cautions),
                **_json(self, "phases when"), "phase_frozen": sorted(self.phase_frozen)}


def nothing_trains(plan: Plan) -> str | None:
    """The problem when the plan trains none of the model's parameters (all frozen or lr 0), else ``None``."""
    if not plan.params or plan.unmatched or plan.conflicts or any(g.lr > 0 for g in plan.groups):
        return None
    if plan.groups:
        zero = sum(len(g.params) for g in plan.groups)
        return printable(f"nothing trains: every group has lr 0 ({zero} tensors) and the other "
                         f"{len(plan.params) - zero} are frozen; give the parameters that should train an lr above 0")
    reasons = list(dict.fromkeys(f.reason for f in plan.frozen))
    why = f" ({'; '.join(reasons)})" if reasons else ""
    return printable(f"nothing trains: all {len(plan.params)} tensors are frozen{why}; give the parameters that "
                     "should train a rule without 'freeze'")


def groups_of(plan: Plan, lr_scale: bool = False, optimizer: str | None = None,
              fresh: bool = False) -> list[dict[str, Any]]:
    """:meth:`Plan.param_groups`, checking the model's tensors are still the plan's unless ``fresh`` (a
    plan resolved just now, as :func:`lrrules.build` does: the check would walk the model again)."""
    if optimizer is None and len(routes := list(dict.fromkeys(g.optimizer for g in plan.groups))) > 1:
        # One optimizer given every group would take the others' options as unknown keys, unread.
        raise PlanProblemsError(f"{plan.source}: the rules route parameters to several optimizers "
                                f"({', '.join(routes)}); use lrrules.build, or param_groups(optimizer=NAME) "
                                "for each")
    if not plan.ok:
        problems = plan.problems()
        # the names wrapped in a prefix, or in a wrapper lrrules does not know: why nothing is claimed
        hints = [f"\n(hint: {c})" for c in plan.cautions if c.startswith(("every name ", "every parameter name "))]
        raise PlanProblemsError(f"{plan.source}: cannot build param groups, {len(problems)} problem(s):\n  "
                                + "\n  ".join(problems) + "".join(hints))
    if not fresh:
        _check_tensors_current(plan)
    by_name = {a.name: plan.tensors[a.index] for a in plan.params}
    out: list[dict[str, Any]] = []
    for group in plan.groups:
        if optimizer is not None and group.optimizer != optimizer:
            continue
        lr = {"lr": plan.base_lr, "lr_scale": group.lr_scale} if lr_scale else {"lr": group.lr}
        out.append({"params": [by_name[n] for n in group.params], "param_names": list(group.params),
                    "name": group.name, **lr, "weight_decay": group.weight_decay,
                    **{k: tuple(v) if isinstance(v, list) else v for k, v in group.options.items()}})
    meta = [n for g in out for n, t in zip(g["param_names"], g["params"]) if t.is_meta]
    if meta:
        # A meta tensor has no values, and to_empty() replaces it: an optimizer over it trains nothing.
        raise ResolveError(
            f"{plan.source}: {len(meta)} parameter(s) are on the meta device ({', '.join(meta[:3])}"
            f"{', ...' if len(meta) > 3 else ''}): they have a shape and no values, and an optimizer over them "
            "would train nothing; build the model on a real device (after model.to_empty(device=...), "
            "initialise it and resolve the rules again against the model as it is then)")
    return out


def _need_tensors(plan: Plan) -> None:
    if not plan.tensors:
        raise PlanProblemsError(f"{plan.source}: this plan was resolved from names only; it holds no tensors")


def _check_tensors_current(plan: Plan) -> None:
    # A parameter replaced after resolution (model.fc = ..., to_empty()) would be handed out as the old one.
    _need_tensors(plan)
    module = plan.model() if plan.model is not None else None
    if module is None:
        return
    try:
        current = {id(t) for t in unwrap(module).parameters()}
    except Exception as exc:  # the model's own parameters() raising
        raise ResolveError(f"{plan.source}: the model's parameters cannot be listed: {type(exc).__name__}: "
                           f"{str(exc)[:300]}") from None
    held = [id(t) for t in plan.tensors]
    if len(current) == len(held) and current.issuperset(held):
        return
    names = {a.index: a.name for a in plan.params}
    gone = [names.get(i, f"#{i}") for i, t in enumerate(held) if t not in current]
    what = (f"{len(gone)} parameter(s) were replaced or removed ({', '.join(gone[:5])})" if gone
            else f"{len(current - set(held))} parameter(s) were added")
    raise ResolveError(f"{plan.source}: {what} in the model after the plan was resolved; resolve the "
                       "rules against the model as it is now")


def hashable(value: Any) -> Any:
    """An option's value as a dict key or set member: a list (``betas``) as a tuple."""
    return tuple(value) if isinstance(value, list) else value


def _json(obj: Any, keys: str) -> dict[str, Any]:
    """The attributes ``keys`` of ``obj`` as plain JSON types: tuples as lists, records by their to_dict()."""
    return {k: _plain_value(getattr(obj, k)) for k in keys.split()}


def _plain_value(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain_value(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Change:
    """One setting of one parameter that differs between two plans (``None`` where it has none)."""

    param: str
    setting: str
    old: Any
    new: Any

    def to_dict(self) -> dict[str, Any]:
        return {"param": self.param, "setting": self.setting, "old": self.old, "new": self.new}


def diff_plans(old: Plan, new: Plan) -> list[Change]:
    """Every status, route, lr, weight decay and option that differs, in ``new``'s order (``absent``:
    a parameter one plan lacks).

    >>> diff_plans(before, after)                                     # doctest: +SKIP
    [Change(param='lm_head.weight', setting='optimizer', old='muon', new='default')]
    """
    before = {a.name: a for a in old.params}
    after = {a.name: a for a in new.params}
    changes = []
    for name in list(after) + [n for n in before if n not in after]:
        a, b = before.get(name), after.get(name)
        for setting, x, y in _compared(a, b, _route(old, a), _route(new, b)):
            if x != y:
                changes.append(Change(name, setting, x, y))
    return changes


def _route(plan: Plan, a: Assignment | None) -> str | None:
    """The name of the optimizer ``a``'s group goes to; ``None`` for a tensor in no group."""
    return plan.groups[a.group].optimizer if a is not None and a.group is not None else None


def _compared(a: Assignment | None, b: Assignment | None, route_a: str | None = None,
              route_b: str | None = None) -> list[tuple[str, Any, Any]]:
    status = ("status", a.status if a else "absent", b.status if b else "absent")
    if a is None or b is None or a.status != b.status:
        return [status]  # a parameter that stopped (or started) training: its settings say nothing more
    keys = list(dict.fromkeys([*a.options, *b.options]))
    return [status, ("trains", a.trains, b.trains), ("optimizer", route_a, route_b), ("lr", a.lr, b.lr),
            ("weight_decay", a.weight_decay, b.weight_decay)] + [
        (f"options.{k}", _plain_value(a.options.get(k)), _plain_value(b.options.get(k))) for k in keys
    ]
