"""Building a torch optimizer from a rule file: :func:`build` (the optimizer and its plan).

``optimizer.type`` is looked up, never imported: a ``torch.optim`` class, else a timm name. Option
names are checked against the optimizer's signature (torch keeps an unknown per-group key without a
word); option values are judged by the optimizer's constructor, the only place torch checks them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .distributed import placed
from .entries import Defaults, Optimizer
from .errors import Location, OptimizerError, UsageError, did_you_mean
from .language import RuleSet
from .loader import load
from .plan import Plan, nothing_trains
from .resume import attach
from .routes import optimizer_type
from .signatures import check_options, options_of, type_location
from .vocabulary import DEFAULT_OPTIMIZER

if TYPE_CHECKING:
    import torch

    from .plan import Group


def optimizer_class(name: str) -> Any:
    """The optimizer class (or timm's factory) that ``name`` names; raises :class:`OptimizerError`.

    >>> optimizer_class("SGD").__name__
    'SGD'
    """
    import torch.optim

    ours = {n: v for n, v in vars(torch.optim).items()
            if isinstance(v, type) and issubclass(v, torch.optim.Optimizer) and v is not torch.optim.Optimizer}
    if name in ours:
        return ours[name]
    # timm.optim re-exports these without __all__, which mypy --strict reads as not exported.
    from timm.optim import get_optimizer_class, list_optimizers  # type: ignore[attr-defined]

    timm_names = [str(n) for n in list_optimizers()]
    if name.lower() in timm_names:
        try:
            return get_optimizer_class(name.lower())
        except Exception as exc:  # timm raises plain errors for optimizers whose package is missing
            raise OptimizerError(f"optimizer '{name}' is known to timm but cannot be used here: {exc}") from None
    raise OptimizerError(f"optimizer type '{name}' names no optimizer{did_you_mean(name, [*ours, *timm_names], n=3)}; "
                         "use a torch.optim class name such as AdamW or SGD, or a timm optimizer name")


def check_optimizer(ruleset: RuleSet) -> tuple[Any, set[str] | None]:
    """The optimizer the file names and the options it takes (``None``: any); raises
    :class:`OptimizerError` for a name that is no optimizer or an option it does not take."""
    try:
        factory = optimizer_class(optimizer_type(ruleset, DEFAULT_OPTIMIZER))
    except OptimizerError as exc:  # placed at the file's `type` value
        raise OptimizerError(exc.message, type_location(ruleset)) from None
    options = options_of(factory)
    if options is not None:
        check_options(ruleset, optimizer_type(ruleset, DEFAULT_OPTIMIZER), options, torch_rules=False)
    return factory, None if options is None else set(options)


def _view(ruleset: RuleSet, name: str) -> RuleSet:
    """The rule set as the optimizer ``name`` sees it: its type, the options of the entries routed to
    it (the others' blanked, positions kept for messages)."""
    spec = ruleset.optimizers.get(name)
    keys = set(spec.group_keys) if spec else set()

    def seen(entry: Any) -> Any:
        mine = entry.optimizer == name or (entry.optimizer is None and name == DEFAULT_OPTIMIZER)
        options = {k: v for k, v in (entry.options or {}).items() if k not in keys} if mine else None
        return entry.model_copy(update={"options": options or None})

    update: dict[str, Any] = {"rules": [seen(r) for r in ruleset.rules],
                              "modifiers": [seen(m) for m in ruleset.modifiers]}
    if spec is not None:  # its own options are checked in place, under optimizers.NAME
        update["optimizer"] = Optimizer.model_construct(type=spec.type)
        update["defaults"] = Defaults.model_construct(lr=ruleset.defaults.lr,
                                                      weight_decay=ruleset.defaults.weight_decay)
    return ruleset.model_copy(update=update)


class _Route(NamedTuple):
    """One optimizer of the file, ready to construct: what makes it, the options its constructor
    takes (``None``: any), the keys it reads per group only, its own settings, its name in messages."""

    factory: Any
    accepted: set[str] | None
    keys: set[str]
    kwargs: dict[str, Any]
    label: str
    where: Location  # of its settings: the file's defaults, or its entry under optimizers


def _route(ruleset: RuleSet, name: str, given: Mapping[str, Any]) -> _Route:
    spec = ruleset.optimizers.get(name)
    keys = set(spec.group_keys) if spec else set()
    if name in given:
        factory, kind, options = given[name], getattr(given[name], "__name__", "optimizer"), options_of(given[name])
        accepted = None if options is None else set(options)
    else:
        (factory, accepted), kind = check_optimizer(_view(ruleset, name)), optimizer_type(ruleset, name)
    if spec is not None and accepted is not None:
        for key in spec.options:
            if key not in accepted | keys:
                raise OptimizerError(f"option '{key}' is not an option of {kind}{did_you_mean(key, accepted)}; {kind} "
                                     f"takes: {', '.join(sorted(accepted - {'lr', 'weight_decay'}))}; a key it reads "
                                     "per group goes in group_keys", ruleset.locate(("optimizers", name, key)))
    own = spec if spec is not None else ruleset.defaults
    kwargs = {"lr": ruleset.defaults.lr if own.lr is None else own.lr,
              **{k: v for k, v in own.options.items() if k not in keys}}
    if accepted is None or "weight_decay" in accepted:
        kwargs["weight_decay"] = ruleset.defaults.weight_decay if own.weight_decay is None else own.weight_decay
    label = f"optimizer '{name}' ({kind})" if ruleset.optimizers else kind
    return _Route(factory, None if accepted is None else accepted - keys, keys, _tuples(kwargs), label,
                  ruleset.locate(("optimizers", name) if spec else ("defaults",)))


def _tuples(options: Mapping[str, Any]) -> dict[str, Any]:
    # A rule file's list is a tuple to torch (betas); a group's own values compare and print as such.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def check_optimizers(ruleset: RuleSet) -> None:
    """:func:`check_optimizer` for each optimizer the file names, each seeing the options of the
    entries routed to it, and each named one's own options; raises :class:`OptimizerError`.

    >>> from lrrules import loads
    >>> check_optimizers(loads("version: 1\\ndefaults: {lr: 0.1, betas: [0.9, 0.99]}"))
    """
    for name in [DEFAULT_OPTIMIZER, *ruleset.optimizers]:
        _route(ruleset, name, {})


def _built(ruleset: RuleSet, plan: Plan, routes: Mapping[str, _Route],
           groups_of: Callable[[str], list[dict[str, Any]]]) -> dict[str, torch.optim.Optimizer]:
    """Each optimizer of ``routes`` that gets groups (``groups_of(name)``, in plan order), judged."""
    built: dict[str, torch.optim.Optimizer] = {}
    for name, route in routes.items():
        groups = groups_of(name)
        if not groups:
            continue
        try:
            built[name] = route.factory(groups, **route.kwargs)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise OptimizerError(f"{route.label} refused the settings: {exc}", route.where) from None
        mine = [g for g in plan.groups if g.optimizer == name]
        _judge(ruleset, route, built[name].defaults, [(g, d["params"][0]) for g, d in zip(mine, groups)])
    return built


def _judge(ruleset: RuleSet, route: _Route, defaults: Mapping[str, Any], mine: list[tuple[Group, Any]]) -> None:
    """Refuse a group option the optimizer does not take, then give each distinct set of a group's
    values to a throwaway optimizer over one of its tensors as settings: torch checks ``betas`` or
    Muon's ``adjust_lr_fn`` there only and steps a group with any value. Errors quote the optimizer."""
    accepted = route.accepted if route.accepted is not None else set(defaults)
    seen: set[str] = set()
    for group, tensor in mine:
        extra = {k: v for k, v in group.options.items() if route.accepted is not None and k not in accepted | route.keys}
        if extra:
            raise OptimizerError(f"option(s) {', '.join(sorted(extra))} (from {', '.join(group.rules)}) are not options "
                                 f"of {route.label}, the optimizer these parameters go to", _setter(ruleset, group, extra))
        own = _tuples({k: v for k, v in group.options.items() if k in accepted})
        if not own or repr(sorted(own.items())) in seen:
            continue
        seen.add(repr(sorted(own.items())))
        try:
            route.factory([{"params": [tensor]}], **{**route.kwargs, **own})
        except (TypeError, ValueError, RuntimeError) as exc:
            raise OptimizerError(f"{route.label} refuses group '{group.name}' "
                                 f"({', '.join(f'{k}={v!r}' for k, v in own.items())}): {exc}; fix the option on "
                                 "the rule or modifier that sets it", _setter(ruleset, group, own)) from None


def _setter(ruleset: RuleSet, group: Group, own: Mapping[str, Any]) -> Location:
    """Where the first of ``group``'s rules and modifiers sets a value of ``own``."""
    for kind, entries in (("rules", ruleset.rules), ("modifiers", ruleset.modifiers)):
        for i, entry in enumerate(entries):
            key = next((k for k in own if k in (entry.options or {})), None)
            if entry.name in group.rules and key is not None:
                return ruleset.locate((kind, i, "options", key))
    return Location(ruleset.path)


def judge_groups(rules: RuleSet, plan: Plan) -> None:
    """:func:`build`'s judgment of each optimizer's settings and each group's values, over meta
    tensors (no model needed); raises :class:`OptimizerError` placed at the rule at fault.

    >>> judge_groups(rules, lrrules.resolve(rules, model))      # doctest: +SKIP
    """
    import torch

    shapes = {p.name: p.shape for p in plan.params}
    _built(rules, plan, {name: _route(rules, name, {}) for name in [DEFAULT_OPTIMIZER, *rules.optimizers]},
           lambda name: [{"params": [torch.empty(shapes[g.params[0]], device="meta")], **_tuples(g.options)}
                         for g in plan.groups if g.optimizer == name])


class Built(NamedTuple):
    """What :func:`build` returns: the optimizer and the plan that made its groups."""

    optimizer: torch.optim.Optimizer
    plan: Plan


def build(rules: str | Path | RuleSet | Plan, model: torch.nn.Module,
          optimizers: Mapping[str, Any] | None = None, base: Any = None, plan: Plan | None = None) -> Built:
    """The optimizer for ``model`` with the param groups ``rules`` give it, and the plan it came from.

    The plan is resolved before anything is frozen; then the frozen get ``requires_grad=False`` and
    the state dict records the group layout (:func:`~lrrules.load_optimizer_state`). Raises
    :class:`~lrrules.errors.PlanProblemsError` if a parameter is unmatched or in conflict. With
    ``optimizers:``, each optimizer (``default``: the single ``optimizer:``) gets the groups routed to
    it, all in one :class:`~lrrules.combined.CombinedOptimizer`. ``optimizers=`` maps a name of the
    file to a class used instead of its ``type``; ``base``: the muP base shapes (``lrrules.resolve``).
    ``plan``: one resolved on the whole model (``rules`` may be that plan, read again from its file),
    bound here to the tensors ``model`` holds (:func:`lrrules.bind`).

    >>> optimizer, plan = lrrules.build("muon.yaml", model, optimizers={"muon": MyMuon})  # doctest: +SKIP
    """
    if isinstance(rules, Plan):  # its rules read again from their file
        if rules.source.startswith("<"):
            raise UsageError("a plan of rules given as text cannot be read again: lrrules.build(rules, model, plan=plan)")
        plan, rules = rules, rules.source
    ruleset = rules if isinstance(rules, RuleSet) else load(rules)
    given = dict(optimizers or {})
    names = [DEFAULT_OPTIMIZER, *ruleset.optimizers]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise UsageError(f"optimizers={{{', '.join(map(repr, unknown))}: ...}} names no optimizer of {ruleset.path}; "
                         f"it names {', '.join(map(repr, names))}")
    if DEFAULT_OPTIMIZER in given and not ruleset.optimizers:  # its type's limits do not apply
        ruleset = ruleset.model_copy(update={"optimizer": None})
    routes = {name: _route(ruleset, name, given) for name in names}
    plan = placed(ruleset, model, plan, base)
    built = _built(ruleset, plan, routes, lambda name: plan.param_groups(optimizer=name))
    if not built:  # torch's own word, "optimizer got an empty parameter list", names no rule
        who = "each optimizer of the file" if ruleset.optimizers else routes[DEFAULT_OPTIMIZER].label
        why = nothing_trains(plan) or f"nothing trains: the model has {len(plan.params)} parameters and no rule trains any"
        raise OptimizerError(f"{why} ({who} would get no parameter to train)", ruleset.path)
    if ruleset.optimizers:
        from .combined import CombinedOptimizer

        optimizer: torch.optim.Optimizer = CombinedOptimizer(built)
    else:
        optimizer = built[DEFAULT_OPTIMIZER]
    # Frozen only once the optimizers are made: a refused optimizer leaves the model as it was.
    plan.apply_freeze()
    attach(optimizer, plan)
    return Built(optimizer, plan)


def build_optimizer(rules: str | Path | RuleSet, model: torch.nn.Module,
                    optimizers: Mapping[str, Any] | None = None, base: Any = None) -> torch.optim.Optimizer:
    """:func:`build`'s optimizer alone (kept for compatibility; :func:`build` also gives the plan).

    >>> optimizer = lrrules.build_optimizer("rules.yaml", model)      # doctest: +SKIP
    """
    return build(rules, model, optimizers, base).optimizer
