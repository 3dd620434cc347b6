"""Building a torch optimizer from a rule file: :func:`build` (the optimizer and its plan).

The file's ``optimizer.type`` is looked up, never imported: first as a class in ``torch.optim``,
then in timm's optimizer registry by name. Every option the file sets (in ``defaults``, rules or
modifiers) is checked against the optimizer's signature, since torch keeps an unknown per-group key
without a word and the typo would never take effect.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from .plan import apply_freeze, groups_of
from .errors import OptimizerError, UsageError
from .language import DEFAULT_OPTIMIZER, Defaults, Optimizer, RuleSet
from .loader import load
from .resolve import resolve
from .resume import attach
from .signatures import check_options, options_of, type_location

if TYPE_CHECKING:
    import torch

    from .plan import Plan


def optimizer_class(name: str) -> Any:
    """The optimizer class (or timm's factory) that ``name`` names; raises :class:`OptimizerError`."""
    import torch.optim

    found = getattr(torch.optim, name, None)
    if isinstance(found, type) and issubclass(found, torch.optim.Optimizer) and found is not torch.optim.Optimizer:
        return found
    from timm.optim import get_optimizer_class, list_optimizers

    timm_names = [str(n) for n in list_optimizers()]
    if name.lower() in timm_names:
        try:
            return get_optimizer_class(name.lower())
        except Exception as exc:  # timm raises plain errors for optimizers whose package is missing
            raise OptimizerError(f"optimizer '{name}' is known to timm but cannot be used here: {exc}") from None
    torch_names = [n for n, v in vars(torch.optim).items()
                   if isinstance(v, type) and issubclass(v, torch.optim.Optimizer) and v is not torch.optim.Optimizer]
    close = difflib.get_close_matches(name, torch_names + timm_names, n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise OptimizerError(
        f"optimizer type '{name}' names no optimizer{hint}; use a torch.optim class name such as AdamW or SGD, "
        "or a timm optimizer name"
    )


def _accepted(factory: Any) -> set[str] | None:
    options = options_of(factory)  # the signature read once, as the table of optimizers reads it
    return None if options is None else set(options)


def check_optimizer(ruleset: RuleSet) -> tuple[Any, set[str] | None]:
    """The optimizer the file names and the options it accepts (``None``: any); raises
    :class:`OptimizerError` for a name that is no optimizer or an option it does not take."""
    name = ruleset.optimizer.type if ruleset.optimizer else "AdamW"
    try:
        factory = optimizer_class(name)
    except OptimizerError as exc:  # placed at the file's `type` value
        raise OptimizerError(exc.message, type_location(ruleset)) from None
    accepted = _accepted(factory)
    if accepted is not None:
        check_options(ruleset, name, options_of(factory) or {},
                      torch_rules=getattr(factory, "__module__", "").startswith("torch.optim"))
    return factory, accepted


class Built(NamedTuple):
    """What :func:`build` returns: the optimizer and the plan that made its groups."""

    optimizer: torch.optim.Optimizer
    plan: Plan


def build(rules: str | Path | RuleSet, model: torch.nn.Module,
          optimizers: Mapping[str, Any] | None = None, base: Any = None) -> Built:
    """The optimizer for ``model`` with the param groups ``rules`` give it, and the plan it came from.

    Resolves once: the plan returned is the one the optimizer's groups were made from, resolved
    before anything was frozen, so it says what the rules say. Then freezes
    (``requires_grad=False``) what the rules freeze, records the group layout in the optimizer's
    state dict (see :func:`~lrrules.load_optimizer_state`), and raises
    :class:`~lrrules.errors.PlanProblemsError` if any parameter is unmatched or in conflict.

    With ``optimizers:`` in the file, it builds each named optimizer over the groups routed to it
    (and the single ``optimizer:``, named ``default``, over the rest) and returns them as one
    :class:`~lrrules.combined.CombinedOptimizer`. ``optimizers`` maps a name of the file to a class
    (or factory) to use for it instead of its ``type``: a rule file never names code to import.
    ``base``: the base shapes the muP variables read (``lrrules:mup``), see :func:`lrrules.resolve.resolve`.

    >>> optimizer, plan = lrrules.build("rules.yaml", model)           # doctest: +SKIP
    >>> scheduler = OneCycleLR(optimizer, max_lr=plan.group_lrs(), total_steps=1000)  # doctest: +SKIP
    >>> optimizer, plan = lrrules.build("muon.yaml", model, optimizers={"muon": MyMuon})  # doctest: +SKIP
    """
    ruleset = rules if isinstance(rules, RuleSet) else load(rules)
    given = dict(optimizers or {})
    unknown = sorted(set(given) - set(ruleset.optimizers) - {DEFAULT_OPTIMIZER})
    if unknown:
        raise UsageError(f"optimizers={{{', '.join(map(repr, unknown))}: ...}} names no optimizer of {ruleset.path}; "
                         f"it names {', '.join(map(repr, [DEFAULT_OPTIMIZER, *ruleset.optimizers]))}")
    if ruleset.optimizers:
        return _build_several(ruleset, model, given, base)
    if DEFAULT_OPTIMIZER in given:
        ruleset = ruleset.model_copy(update={"optimizer": None})
        factory, accepted = given[DEFAULT_OPTIMIZER], _accepted(given[DEFAULT_OPTIMIZER])
        return _build_one(ruleset, model, factory, accepted, getattr(factory, "__name__", "optimizer"), base)
    factory, accepted = check_optimizer(ruleset)
    name = ruleset.optimizer.type if ruleset.optimizer else "AdamW"
    return _build_one(ruleset, model, factory, accepted, name, base)


def _build_one(ruleset: RuleSet, model: torch.nn.Module, factory: Any, accepted: set[str] | None,
               name: str, base: Any = None) -> Built:
    plan = resolve(ruleset, model, base)
    groups = groups_of(plan, fresh=True)
    if not groups:
        _nothing_trains(ruleset, plan, name)
    kwargs: dict[str, Any] = {"lr": ruleset.defaults.lr, **ruleset.defaults.options}
    if accepted is None or "weight_decay" in accepted:
        kwargs["weight_decay"] = ruleset.defaults.weight_decay
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    try:
        optimizer = factory(groups, **kwargs)
    except (TypeError, ValueError) as exc:
        raise OptimizerError(f"{name} refused the settings: {exc}", ruleset.path) from None
    _groups_judged(ruleset, factory, accepted, kwargs, optimizer.defaults, groups, name)
    # Frozen only once the optimizer is made: a refused optimizer leaves the model as it was.
    apply_freeze(plan)
    attach(optimizer, plan)
    return Built(optimizer, plan)


def _groups_judged(ruleset: RuleSet, factory: Any, accepted: set[str] | None, kwargs: Mapping[str, Any],
                   defaults: Mapping[str, Any], groups: list[dict[str, Any]], who: str) -> None:
    """Let the optimizer judge each group's own values as it judges its settings: torch checks
    ``betas``, ``eps`` or Muon's ``adjust_lr_fn`` in the constructor only, and steps a param group with
    any value (an unknown ``adjust_lr_fn`` silently drops Muon's shape factor). Each distinct group
    that sets values of its own is built once more, alone, on its first tensor, and thrown away. The
    values judged are the constructor's options, or, where it takes ``**kwargs``, its ``defaults``' keys."""
    if accepted is None:
        accepted = set(defaults)
    seen: set[str] = set()
    for group in groups:
        own = {k: tuple(v) if isinstance(v, list) else v for k, v in group.items()
               if k in accepted and k != "params" and _differs(defaults.get(k), v)}
        key = repr(sorted(own.items()))
        if not own or key in seen:
            continue
        seen.add(key)
        try:
            factory([{"params": group["params"][:1]}], **{**kwargs, **own})
        except (TypeError, ValueError, RuntimeError) as exc:
            raise OptimizerError(f"{who} refuses group '{group.get('name', '?')}' "
                                 f"({', '.join(f'{k}={v!r}' for k, v in own.items())}): {exc}; fix the option on "
                                 "the rule or modifier that sets it", ruleset.path) from None


def _differs(default: Any, value: Any) -> bool:
    """Whether a group's value is not the optimizer's default (a tensor, or anything that does not
    compare plainly, counts as differing: it is judged)."""
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        default, value = tuple(default), tuple(value)
    try:
        return bool(default != value)
    except (TypeError, ValueError, RuntimeError):
        return True


def build_optimizer(rules: str | Path | RuleSet, model: torch.nn.Module,
                    optimizers: Mapping[str, Any] | None = None, base: Any = None) -> torch.optim.Optimizer:
    """:func:`build`'s optimizer alone (kept for compatibility; :func:`build` also gives the plan).

    >>> optimizer = lrrules.build_optimizer("rules.yaml", model)      # doctest: +SKIP
    """
    return build(rules, model, optimizers, base).optimizer


# --- several optimizers (issue 13) ------------------------------------------------------------


def _view(ruleset: RuleSet, name: str) -> RuleSet:
    """The rule set as the optimizer ``name`` sees it, for :func:`check_optimizer`: its type, and
    the options of the entries routed to it (the others' options blanked, positions kept for messages)."""
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


def _check_named(ruleset: RuleSet, name: str, factory: Any, accepted: set[str] | None) -> None:
    spec = ruleset.optimizers[name]
    kind = getattr(factory, "__name__", spec.type)
    for key in spec.options:
        if accepted is not None and key not in accepted and key not in spec.group_keys:
            close = difflib.get_close_matches(key, sorted(accepted), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            takes = ", ".join(sorted(accepted - {"lr", "weight_decay"}))
            raise OptimizerError(f"option '{key}' is not an option "
                                 f"of {kind}{hint}; {kind} takes: {takes}"
                                 "; a key it reads per group goes in group_keys", ruleset.locate(('optimizers', name, key)))


def check_optimizers(ruleset: RuleSet) -> None:
    """:func:`check_optimizer` for each optimizer the file names (the single one and each under
    ``optimizers``), each seeing the options of the entries routed to it; raises :class:`OptimizerError`.

    >>> check_optimizers(lrrules.load("examples/muon-adamw.yaml"))      # doctest: +SKIP
    """
    for name in [DEFAULT_OPTIMIZER, *ruleset.optimizers]:
        factory, accepted = check_optimizer(_view(ruleset, name))
        if name != DEFAULT_OPTIMIZER:
            _check_named(ruleset, name, factory, accepted)


def _nothing_trains(ruleset: RuleSet, plan: Plan, who: str) -> NoReturn:
    # Torch's own word for this is "optimizer got an empty parameter list", which names no rule.
    from .report import nothing_trains

    why = (nothing_trains(plan) or [f"nothing trains: the model has {len(plan.params)} parameters and no rule trains any"])[0]
    raise OptimizerError(f"{why} ({who} would get no parameter to train)", ruleset.path)


def _build_several(ruleset: RuleSet, model: torch.nn.Module, given: Mapping[str, Any], base: Any = None) -> Built:
    from .combined import CombinedOptimizer

    plan = resolve(ruleset, model, base)
    built: dict[str, Any] = {}
    for name in [DEFAULT_OPTIMIZER, *ruleset.optimizers]:
        spec = ruleset.optimizers.get(name)
        if name in given:
            factory, accepted = given[name], _accepted(given[name])
        else:
            factory, accepted = check_optimizer(_view(ruleset, name))
        if spec is not None:
            _check_named(ruleset, name, factory, accepted)
        mine = list(zip([g for g in plan.groups if g.optimizer == name], groups_of(plan, optimizer=name, fresh=True)))
        if not mine:
            continue
        keys = set(spec.group_keys) if spec else set()
        kind = getattr(factory, "__name__", spec.type if spec else "optimizer")
        for group, _ in mine:  # what modifiers routed here from rules that name no optimizer, too
            extra = sorted(k for k in group.options if accepted is not None and k not in accepted and k not in keys)
            if extra:
                raise OptimizerError(f"option(s) {', '.join(extra)} (from {', '.join(group.rules)}) "
                                     f"are not options of {kind}, the optimizer '{name}' these parameters go to", ruleset.path)
        if spec is not None:
            kwargs = {"lr": spec.lr if spec.lr is not None else ruleset.defaults.lr,
                      **{k: v for k, v in spec.options.items() if k not in keys}}
            decay = spec.weight_decay if spec.weight_decay is not None else ruleset.defaults.weight_decay
        else:
            kwargs, decay = {"lr": ruleset.defaults.lr, **ruleset.defaults.options}, ruleset.defaults.weight_decay
        if accepted is None or "weight_decay" in accepted:
            kwargs["weight_decay"] = decay
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        try:
            built[name] = factory([d for _, d in mine], **kwargs)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise OptimizerError(f"optimizer '{name}' ({kind}) refused the settings: {exc}", ruleset.path) from None
        _groups_judged(ruleset, factory, accepted - keys if accepted is not None else None, kwargs,
                       built[name].defaults, [d for _, d in mine], f"optimizer '{name}' ({kind})")
    if not built:
        _nothing_trains(ruleset, plan, "each optimizer of the file")
    optimizer = CombinedOptimizer(built)
    apply_freeze(plan)
    attach(optimizer, plan)
    return Built(optimizer, plan)
