"""Per-rule schedules: each group's ``lr_schedule`` formula as a torch ``LambdaLR`` (one function per group).

``lr_schedule: "min(1, step / 500)"`` on a rule scales the lr of what it matches over time (warm a
new head up while the backbone waits). The formula reads ``step`` (from 0), ``epoch`` (``step //
steps_per_epoch``), ``total_steps`` and the file's vars; a group without one keeps factor 1. The
global schedule, given as ``base`` (a function of the step, one per group, or a ``LambdaLR`` such as
Hugging Face's), composes by multiplication: at step ``s`` a group's lr is ``initial_lr * base(s) * rule(s)``.

>>> scheduler = lrrules.rule_scheduler(optimizer, plan, total_steps=1000)      # doctest: +SKIP
>>> for batch in data:                                                           # doctest: +SKIP
...     loss(batch).backward(); optimizer.step(); scheduler.step()
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Union

from .errors import FormulaError, LrrulesError, UsageError
from .formula import Formula, compile_formula
from .vocabulary import SCHEDULE_VARIABLES

if TYPE_CHECKING:
    import torch

    from .plan import Plan

Factor = Callable[[int], float]
Base = Union[Factor, Sequence[Factor], Any, None]


class ScheduleError(LrrulesError):
    """An ``lr_schedule`` formula that gave no usable factor at some step."""


def rule_lambdas(plan: Plan, total_steps: int | None = None, steps_per_epoch: int | None = None,
                 base: Base = None) -> list[Factor]:
    """One function of the step per group of ``plan``, in group order: the group's ``lr_schedule``
    (1 where it has none) times ``base`` (the global schedule, see the module docstring).

    >>> lambdas = rule_lambdas(plan, total_steps=1000)                  # doctest: +SKIP
    >>> LambdaLR(optimizer, lambdas)                                      # doctest: +SKIP
    """
    total_steps = _whole("total_steps", total_steps)
    steps_per_epoch = _whole("steps_per_epoch", steps_per_epoch)
    bases = _bases(base, len(plan.groups))
    out: list[Factor] = []
    for group, outer in zip(plan.groups, bases):
        rule = _factor(plan, group.index, group.lr_schedule, total_steps, steps_per_epoch)
        out.append(rule if outer is None else _times(outer, rule))
    return out


def rule_scheduler(optimizer: torch.optim.Optimizer, plan: Plan, total_steps: int | None = None,
                   steps_per_epoch: int | None = None, base: Base = None) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over ``optimizer`` (built from ``plan``) applying each group's ``lr_schedule``;
    step it once per optimizer step. ``base`` is the global schedule it composes with.

    >>> warmup = get_linear_schedule_with_warmup(optimizer, 100, 1000)   # doctest: +SKIP
    >>> scheduler = rule_scheduler(optimizer, plan, 1000, base=warmup)   # doctest: +SKIP
    """
    from torch.optim.lr_scheduler import LambdaLR

    if len(optimizer.param_groups) != len(plan.groups):
        raise UsageError(f"the optimizer has {len(optimizer.param_groups)} param groups and the plan "
                         f"{len(plan.groups)}: build the optimizer from this plan (lrrules.build)")
    return LambdaLR(optimizer, rule_lambdas(plan, total_steps, steps_per_epoch, base))


def _whole(name: str, value: Any) -> int | None:
    """Refuse a step count that cannot work: ``steps_per_epoch=0`` would divide by zero at the first
    step, ``-1`` count epochs backwards, ``2.5`` or ``True`` make epochs that are not whole numbers.
    An integer of another kind (numpy's, a 0-d tensor) is one ``operator.index`` takes."""
    if value is None:
        return None
    try:
        whole = operator.index(value)
    except TypeError:
        whole = 0
    if isinstance(value, bool) or whole < 1:
        raise UsageError(f"{name}={value!r}: give a whole number of steps >= 1 (or leave it out)")
    return whole


def _bases(base: Base, n: int) -> list[Factor | None]:
    lambdas = getattr(base, "lr_lambdas", None)  # a LambdaLR: its functions, one per group
    if lambdas is not None:
        base = list(lambdas)
    if base is None or callable(base):
        return [base] * n
    found = list(base)
    if len(found) != n or not all(callable(f) for f in found):
        raise UsageError(f"base gives {len(found)} functions for {n} groups; give one function of the step, "
                         "one per group, or a LambdaLR")
    return found


def _times(outer: Factor, rule: Factor) -> Factor:
    return lambda step: outer(step) * rule(step)


def _factor(plan: Plan, index: int, text: str | None, total_steps: int | None,
            steps_per_epoch: int | None) -> Factor:
    if text is None:
        return lambda step: 1.0
    formula: Formula = compile_formula(text, set(SCHEDULE_VARIABLES) | set(plan.schedule_vars))
    where = f"{plan.source}: group {index}: lr_schedule '{text}'"
    if "total_steps" in formula.names and total_steps is None:
        raise UsageError(f"{where} reads total_steps; pass total_steps= to rule_scheduler")
    if "epoch" in formula.names and not steps_per_epoch:
        raise UsageError(f"{where} reads epoch; pass steps_per_epoch= to rule_scheduler")
    env: dict[str, Any] = {**plan.schedule_vars, "total_steps": total_steps}

    def factor(step: int) -> float:
        env["step"] = step
        env["epoch"] = step // steps_per_epoch if steps_per_epoch else None
        try:
            value = float(formula.evaluate(env))
        except FormulaError as exc:
            raise ScheduleError(f"{where}: {exc.message} at step {step}") from None
        if not math.isfinite(value) or value < 0:
            raise ScheduleError(f"{where} gives {value} at step {step}; a factor must be a finite number >= 0")
        return value

    factor(0)  # a formula that fails at once fails here, not inside the first scheduler step
    return factor
