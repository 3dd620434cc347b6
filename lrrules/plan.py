"""The result of resolving a rule file against a model: a :class:`Plan`, plain immutable data.

A plan says, for every parameter, which rule claimed it, which modifiers changed it, what it
captured and what it ends up with; it groups the trainable parameters into the fewest optimizer
groups; and it lists every problem: unmatched and conflicting parameters, unused rules, zero
learning rates. Nothing mutates a plan. The methods that touch tensors (:meth:`Plan.param_groups`,
:meth:`Plan.apply_freeze`, :meth:`Plan.apply_phase`) are kept for their callers and run the
functions of :mod:`lrrules.apply`, the one module whose functions change models.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

Status = Literal["trainable", "frozen", "unmatched", "conflict"]


@dataclass(frozen=True)
class Step:
    """One value a rule or modifier gave a parameter: ``setting`` (``lr_mult``, ``options.momentum``)
    from ``entry``, the ``formula`` (``None`` for a plain number) with the ``variables`` it read."""

    entry: str
    setting: str
    formula: str | None
    variables: Mapping[str, Any]
    value: Any

    def to_dict(self) -> dict[str, Any]:
        return {"entry": self.entry, "setting": self.setting, "formula": self.formula,
                "variables": dict(self.variables), "value": list(self.value) if isinstance(self.value, tuple)
                else self.value}


@dataclass(frozen=True)
class Assignment:
    """One parameter's outcome. ``lr`` and the other settings are ``None`` unless it trains."""

    name: str
    shape: tuple[int, ...]
    module: str | None
    index: int
    layer: int | None
    status: Status
    rule: str | None = None
    modifiers: tuple[str, ...] = ()
    captures: Mapping[str, int | str] = field(default_factory=dict)
    lr: float | None = None
    lr_scale: float | None = None
    weight_decay: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    group: int | None = None
    aliases: tuple[str, ...] = ()
    note: str = ""
    steps: tuple[Step, ...] = ()
    trains: bool = True  # False while a training phase freezes it (it keeps its group)
    matched_as: str | None = None  # the name its rule matched, where it has several (tied weights)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "shape": list(self.shape),
            "numel": self.numel,
            "module": self.module,
            "index": self.index,
            "layer": self.layer,
            "status": self.status,
            "group": self.group,
            "rule": self.rule,
            "modifiers": list(self.modifiers),
            "captures": dict(self.captures),
            "lr": self.lr,
            "lr_scale": self.lr_scale,
            "weight_decay": self.weight_decay,
            "options": _plain(self.options),
            "note": self.note,
            "trains": self.trains,
            "matched_as": self.matched_as,
            "steps": [s.to_dict() for s in self.steps],
        }


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
    #: Unique and readable: the names of the rules and modifiers that made it (``head+no-decay``),
    #: ``#2``, ``#3`` ... after repeats. The param group's ``name`` key (Lightning's LearningRateMonitor).
    name: str = ""
    optimizer: str = "default"  # the named optimizer it goes to
    lr_schedule: str | None = None  # the formula of step scaling its lr (see lrrules.schedules)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "lr": self.lr,
            "lr_scale": self.lr_scale,
            "weight_decay": self.weight_decay,
            "options": _plain(self.options),
            "params": list(self.params),
            "numel": self.numel,
            "rules": list(self.rules),
            "optimizer": self.optimizer,
            "lr_schedule": self.lr_schedule,
        }


@dataclass(frozen=True)
class Conflict:
    """A parameter that cannot get one setting: two claiming rules, two modifiers setting one value
    differently, or tied names claimed by different rules. ``rules`` names every entry involved."""

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
        return {"param": self.param, "kind": self.kind, "rules": list(self.rules), "setting": self.setting,
                "names": list(self.names), "message": self.message}


@dataclass(frozen=True)
class Frozen:
    """A parameter out of training, and why: a rule's ``freeze`` or ``requires_grad=False`` already."""

    param: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"param": self.param, "reason": self.reason}


@dataclass(frozen=True)
class Settled:
    """The final settings of a trainable parameter, shared by every parameter that resolves alike."""

    lr: float
    lr_scale: float
    weight_decay: float
    options: Mapping[str, Any]
    steps: tuple[Step, ...] = ()
    optimizer: str = "default"
    lr_schedule: str | None = None

    @property
    def key(self) -> tuple[Any, ...]:
        """What makes two parameters share an optimizer group."""
        return (self.lr, self.lr_scale, self.weight_decay,
                tuple(sorted((k, hashable(v)) for k, v in self.options.items())), self.optimizer, self.lr_schedule)


class Outcome(NamedTuple):
    """What a parameter's :class:`Row` says besides the parameter and its layer. Parameters that
    resolve alike share one: a plan holds one per distinct outcome, not one per tensor."""

    status: Status
    rule: str | None = None
    modifiers: tuple[str, ...] = ()
    captures: Mapping[str, int | str] = {}  # never mutated
    settled: Settled | None = None
    group: int | None = None
    note: str = ""
    #: the name the claiming rule matched: ``None`` for the parameter's own name (so that outcomes are
    #: shared), another of its names (tied weights), or ``""`` where no rule claimed it
    matched_as: str | None = ""


class Row(NamedTuple):
    """One parameter's outcome as the resolver records it: the parameter (``info``, a ``ParamInfo``),
    its layer, and its shared :class:`Outcome`, whose fields read as the row's own (``row.rule``,
    ``row.settled``). :attr:`Plan.params` makes an :class:`Assignment` of it when asked, so resolving
    a large model builds no object it need not."""

    info: Any  # ParamInfo
    layer: int | None
    outcome: Outcome

    status = property(lambda self: self[2].status)
    rule = property(lambda self: self[2].rule)
    modifiers = property(lambda self: self[2].modifiers)
    captures = property(lambda self: self[2].captures)
    settled = property(lambda self: self[2].settled)
    group = property(lambda self: self[2].group)
    note = property(lambda self: self[2].note)

    @property
    def matched_as(self) -> str:
        """The name the claiming rule matched (one of a tied tensor's names); ``""`` where none claimed it."""
        name = self[2].matched_as
        return self[0].name if name is None else name

    def assignment(self, trains: bool = True) -> Assignment:
        info, o = self.info, self.outcome
        s = o.settled
        return Assignment(
            info.name, info.shape, info.module, info.index, self.layer, o.status, o.rule, o.modifiers,
            dict(o.captures), s.lr if s else None, s.lr_scale if s else None, s.weight_decay if s else None,
            dict(s.options) if s else {}, o.group, info.aliases, o.note, s.steps if s else (),
            trains and o.status == "trainable", self.matched_as or None,
        )


class Rows(Sequence[Row]):
    """Every parameter's :class:`Row`, in registration order, kept as three columns: the parameters,
    their layers, and their outcomes (shared among parameters that resolve alike). A row is made when
    it is read, so a million-tensor plan holds three lists of references, not a million row objects.

    >>> rows = Rows((info,), (None,), (Outcome("frozen"),)); rows[0].status      # doctest: +SKIP
    'frozen'
    """

    __slots__ = ("infos", "layers", "outcomes")

    def __init__(self, infos: Sequence[Any], layers: Sequence[int | None], outcomes: Sequence[Outcome]) -> None:
        if not len(infos) == len(layers) == len(outcomes):
            raise ValueError("one layer and one outcome per parameter")
        self.infos = tuple(infos)
        self.layers = tuple(layers)
        self.outcomes = tuple(outcomes)

    def __len__(self) -> int:
        return len(self.infos)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(map(_row, self.infos[index], self.layers[index], self.outcomes[index]))
        return _row(self.infos[index], self.layers[index], self.outcomes[index])

    def __iter__(self) -> Iterator[Row]:
        return map(_row, self.infos, self.layers, self.outcomes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Rows):
            return (self.infos, self.layers, self.outcomes) == (other.infos, other.layers, other.outcomes)
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Rows({len(self)} rows)"

    def __getstate__(self) -> tuple[tuple[Any, ...], ...]:
        return self.infos, self.layers, self.outcomes

    def __setstate__(self, state: tuple[tuple[Any, ...], ...]) -> None:
        self.infos, self.layers, self.outcomes = state


def _row(info: Any, layer: int | None, outcome: Outcome, _new: Any = tuple.__new__) -> Row:
    return _new(Row, (info, layer, outcome))  # Row(...) without the named tuple's Python-level __new__


@dataclass(frozen=True)
class PhaseEffect:
    """A training phase resolved: when it starts and which grouped parameters it freezes and unfreezes."""

    index: int
    from_epoch: int | None
    from_step: int | None
    freeze: tuple[str, ...]
    unfreeze: tuple[str, ...]

    def started(self, epoch: int | None, step: int | None) -> bool:
        if self.from_epoch is not None:
            return epoch is not None and epoch >= self.from_epoch
        return step is not None and self.from_step is not None and step >= self.from_step

    @property
    def when(self) -> str:
        return f"epoch {self.from_epoch}" if self.from_epoch is not None else f"step {self.from_step}"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "from_epoch": self.from_epoch, "from_step": self.from_step,
                "freeze": list(self.freeze), "unfreeze": list(self.unfreeze)}


@dataclass(frozen=True)
class Plan:
    """Every parameter's assignment, the optimizer groups, and the problems found.

    >>> plan = lrrules.load("rules.yaml").resolve(model)          # doctest: +SKIP
    >>> optimizer = torch.optim.AdamW(plan.param_groups())         # doctest: +SKIP
    """

    source: str
    base_lr: float
    base_weight_decay: float
    unmatched_mode: Literal["error", "defaults"]
    rows: Rows = field(repr=False)  # a sequence of Row
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

    def __getstate__(self) -> dict[str, Any]:
        # A copy (pickle, deepcopy) is the plan's data only: the weak model reference cannot be
        # pickled, and copied tensors would be trained by no model. A copied plan is names-only, so
        # param_groups(), apply_freeze() and apply_phase() refuse it as they refuse one from a checkpoint.
        state = {k: v for k, v in self.__dict__.items() if k != "params"}
        state.update(model=None, tensors=())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @functools.cached_property
    def params(self) -> tuple[Assignment, ...]:
        """Every parameter's :class:`Assignment`, in registration order."""
        return tuple(row.assignment(row.info.name not in self.phase_frozen) for row in self.rows)

    def frozen_at(self, epoch: int | None = None, step: int | None = None) -> frozenset[str]:
        """The grouped parameters the training phases freeze at ``epoch`` (or ``step``): every phase
        that has started applies, in order, so later phases build on earlier ones."""
        frozen: set[str] = set()
        for phase in self.phases:
            if phase.started(epoch, step):
                frozen.update(phase.freeze)
                frozen.difference_update(phase.unfreeze)
        return frozenset(frozen)

    def at(self, epoch: int | None = None, step: int | None = None) -> Plan:
        """This plan as it stands at ``epoch`` (or ``step``): the same groups, with the parameters the
        phases freeze then marked ``trains=False``."""
        when = ", ".join(f"{k} {v}" for k, v in (("epoch", epoch), ("step", step)) if v is not None)
        return dataclasses.replace(self, phase_frozen=self.frozen_at(epoch, step), when=when)

    def apply_phase(self, epoch: int | None = None, step: int | None = None) -> frozenset[str]:
        """Set ``requires_grad`` on the grouped parameters as the phases say at ``epoch`` (or ``step``),
        and return the names frozen. Call it at the start of each epoch (or step); it depends on the
        epoch alone, so a run resumed at epoch N is in the state of one that ran to it. The optimizer
        keeps every parameter in its group: a frozen one has its gradient set to ``None``, so the
        optimizer skips it (no momentum or weight decay step), its state kept.

        >>> for epoch in range(start, epochs):                          # doctest: +SKIP
        ...     plan.apply_phase(epoch=epoch)
        """
        from .apply import apply_phase

        return apply_phase(self, epoch, step)

    @property
    def ok(self) -> bool:
        """True when every trainable parameter has exactly one setting."""
        return not self.conflicts and not (self.unmatched and self.unmatched_mode == "error")

    def problems(self) -> list[str]:
        """One line per problem that stops :meth:`param_groups`: unmatched and conflicting parameters."""
        lines = [c.message for c in self.conflicts]
        if self.unmatched_mode == "error":
            lines += [f"'{name}' is claimed by no rule; add a rule or a fallback" for name in self.unmatched]
        return lines

    def warnings(self) -> list[str]:
        """Lines about what resolves but is likely a mistake: unused rules, lr = 0, a layering too
        coarse for the formulas that read it, names that still look wrapped."""
        lines = list(self.cautions)
        lines += [f"rule '{r}' matches no parameter" for r in self.unused_rules]
        lines += [f"phase {p.index} ({p.when}) matches no parameter" for p in self.phases
                  if not p.freeze and not p.unfreeze]
        lines += [f"'{n}' resolves to lr = 0; use 'freeze: true' to take it out of training" for n in self.zero_lr]
        return lines

    def param_groups(self, lr_scale: bool = False, optimizer: str | None = None) -> list[dict[str, Any]]:
        """The optimizer param groups: ``params``, ``param_names``, ``lr``, ``weight_decay`` and the
        other options of each group. Raises :class:`PlanProblemsError` listing every problem if any
        parameter is unmatched or in conflict.

        By default ``lr`` is each group's final lr, which every torch scheduler and timm's schedulers
        keep in proportion. ``lr_scale=True`` gives timm's own convention instead: ``lr`` is the base
        lr and ``lr_scale`` the group's multiplier, which timm's schedulers apply. Never mix the two:
        a group with both a final lr and an lr_scale is scaled twice by timm's schedulers.

        A plan that routes parameters to several optimizers (``optimizers:``) gives the groups of one
        at a time: ``param_groups(optimizer="muon")`` (``"default"``: the single ``optimizer:``).

        >>> torch.optim.AdamW(plan.param_groups())                   # doctest: +SKIP
        """
        from .apply import param_groups

        return param_groups(self, lr_scale, optimizer)

    @property
    def fingerprint(self) -> str:
        """A hash of the ordered group layout (parameter names and shapes); see :mod:`lrrules.resume`."""
        from .resume import fingerprint

        return fingerprint(self)

    def group_lrs(self) -> list[float]:
        """Each group's lr, in group order: ``OneCycleLR(optimizer, max_lr=plan.group_lrs(), ...)``."""
        return [g.lr for g in self.groups]

    def apply_freeze(self) -> int:
        """Set ``requires_grad=False`` on the parameters the rules freeze; returns how many changed.

        Raises :class:`PlanProblemsError` on a plan that holds no tensors (resolved from a checkpoint's
        names, or copied), as :meth:`apply_phase` does, rather than silently freezing nothing.
        """
        from .apply import apply_freeze

        return apply_freeze(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: ``groups``, ``params``, ``unmatched``, ``conflicts``, ``frozen``, ``unused_rules``."""
        return {
            "source": self.source,
            "base_lr": self.base_lr,
            "base_weight_decay": self.base_weight_decay,
            "base_options": _plain(self.base_options),
            "num_layers": self.num_layers,
            "ok": self.ok,
            "groups": [g.to_dict() for g in self.groups],
            "params": [a.to_dict() for a in self.params],
            "unmatched": list(self.unmatched),
            "conflicts": [c.to_dict() for c in self.conflicts],
            "frozen": [f.to_dict() for f in self.frozen],
            "unused_rules": list(self.unused_rules),
            "zero_lr": list(self.zero_lr),
            "warnings": list(self.cautions),
            "phases": [p.to_dict() for p in self.phases],
            "when": self.when,
            "phase_frozen": sorted(self.phase_frozen),
        }


def hashable(value: Any) -> Any:
    """An option's value as a dict key or set member: a list (``betas``) as a tuple."""
    return tuple(value) if isinstance(value, list) else value


def _plain(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


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
    """Every setting that differs between ``old`` and ``new``, parameter by parameter, in ``new``'s order.

    Compared: the status (trainable, frozen, unmatched, conflict), the optimizer a trainable one is
    routed to (``optimizers:`` names; ``default`` the single one), ``lr``, ``weight_decay`` and each
    option. A parameter that only one plan has shows as ``absent`` in the other.

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
        (f"options.{k}", _plain(a.options).get(k), _plain(b.options).get(k)) for k in keys
    ]
