"""Building a torch optimizer from a rule file: :func:`build` (the optimizer and its plan).

The file's ``optimizer.type`` is looked up, never imported: first as a class in ``torch.optim``,
then in timm's optimizer registry by name. Every option the file sets (in ``defaults``, rules or
modifiers) is checked against the optimizer's signature, since torch keeps an unknown per-group key
without a word and the typo would never take effect.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .apply import apply_freeze, param_groups
from .errors import OptimizerError
from .language import RuleSet
from .loader import load
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
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return None
    return set(signature.parameters) - {"self", "params"}


def check_optimizer(ruleset: RuleSet) -> tuple[Any, set[str] | None]:
    """The optimizer the file names and the options it accepts (``None``: any); raises
    :class:`OptimizerError` for a name that is no optimizer or an option it does not take."""
    name = ruleset.optimizer.type if ruleset.optimizer else "AdamW"
    try:
        factory = optimizer_class(name)
    except OptimizerError as exc:  # placed at the file's `type` value
        raise OptimizerError(f"{type_location(ruleset)}: {exc}") from None
    accepted = _accepted(factory)
    if accepted is not None:
        check_options(ruleset, name, options_of(factory) or {},
                      torch_rules=getattr(factory, "__module__", "").startswith("torch.optim"))
    return factory, accepted


class Built(NamedTuple):
    """What :func:`build` returns: the optimizer and the plan that made its groups."""

    optimizer: torch.optim.Optimizer
    plan: Plan


def build(rules: str | Path | RuleSet, model: torch.nn.Module) -> Built:
    """The optimizer for ``model`` with the param groups ``rules`` give it, and the plan it came from.

    Resolves once: the plan returned is the one the optimizer's groups were made from, resolved
    before anything was frozen, so it says what the rules say. Then freezes
    (``requires_grad=False``) what the rules freeze, records the group layout in the optimizer's
    state dict (see :func:`~lrrules.load_optimizer_state`), and raises
    :class:`~lrrules.errors.PlanProblemsError` if any parameter is unmatched or in conflict.

    >>> optimizer, plan = lrrules.build("rules.yaml", model)           # doctest: +SKIP
    >>> scheduler = OneCycleLR(optimizer, max_lr=plan.group_lrs(), total_steps=1000)  # doctest: +SKIP
    """
    ruleset = rules if isinstance(rules, RuleSet) else load(rules)
    factory, accepted = check_optimizer(ruleset)
    name = ruleset.optimizer.type if ruleset.optimizer else "AdamW"
    plan = ruleset.resolve(model)
    groups = param_groups(plan)
    kwargs: dict[str, Any] = {"lr": ruleset.defaults.lr, **ruleset.defaults.options}
    if accepted is None or "weight_decay" in accepted:
        kwargs["weight_decay"] = ruleset.defaults.weight_decay
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    try:
        optimizer = factory(groups, **kwargs)
    except (TypeError, ValueError) as exc:
        raise OptimizerError(f"{ruleset.path}: {name} refused the settings: {exc}") from None
    # Frozen only once the optimizer is made: a refused optimizer leaves the model as it was.
    apply_freeze(plan)
    attach(optimizer, plan)
    return Built(optimizer, plan)


def build_optimizer(rules: str | Path | RuleSet, model: torch.nn.Module) -> torch.optim.Optimizer:
    """:func:`build`'s optimizer alone (kept for compatibility; :func:`build` also gives the plan).

    >>> optimizer = lrrules.build_optimizer("rules.yaml", model)      # doctest: +SKIP
    """
    return build(rules, model).optimizer
