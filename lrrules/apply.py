"""The functions that touch live tensors through a plan: the only code here that changes a model.

A :class:`~lrrules.plan.Plan` is data; these read its rows and the tensors it was resolved with.
:func:`param_groups` hands the tensors out in the plan's groups (checking that they are still the
model's), :func:`apply_freeze` sets ``requires_grad=False`` where the rules freeze, and
:func:`apply_phase` sets ``requires_grad`` as the training phases say at an epoch or step. Each
refuses a plan that holds no tensors (resolved from a checkpoint's names, or copied) with
:class:`~lrrules.errors.PlanProblemsError`. The :class:`~lrrules.plan.Plan` methods of the same
names call these.

>>> apply_freeze(plan)                                   # doctest: +SKIP
>>> optimizer = torch.optim.AdamW(param_groups(plan))    # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import PlanProblemsError, ResolveError

if TYPE_CHECKING:
    from .plan import Plan


def param_groups(plan: Plan, lr_scale: bool = False, optimizer: str | None = None) -> list[dict[str, Any]]:
    """The optimizer param groups of ``plan``, its tensors in them (see :meth:`Plan.param_groups`);
    with ``optimizer``, only those routed to that named optimizer.

    >>> torch.optim.AdamW(param_groups(plan))        # doctest: +SKIP
    """
    return groups_of(plan, lr_scale, optimizer, fresh=False)


def groups_of(plan: Plan, lr_scale: bool = False, optimizer: str | None = None,
              fresh: bool = False) -> list[dict[str, Any]]:
    """:func:`param_groups`. Every call checks that the model's tensors are still the plan's (another
    thread may have replaced one since ``build`` resolved a moment ago); ``fresh`` is what ``build``
    passed when that check was skipped there, and changes nothing now (the walk costs 60 ms for
    100k tensors)."""
    routes = list(dict.fromkeys(g.optimizer for g in plan.groups))
    if optimizer is None and len(routes) > 1:
        # One optimizer given every group would take the others' options as unknown keys, unread.
        raise PlanProblemsError(f"{plan.source}: the rules route parameters to several optimizers "
                                f"({', '.join(routes)}); use lrrules.build, or param_groups(optimizer=NAME) "
                                "for each")
    if not plan.ok:
        problems = plan.problems()
        raise PlanProblemsError(
            f"{plan.source}: cannot build param groups, {len(problems)} problem(s):\n  " + "\n  ".join(problems)
        )
    _need_tensors(plan)
    _check_tensors_current(plan)
    by_name = {row.info.name: plan.tensors[row.info.index] for row in plan.rows}
    out = []
    for group in plan.groups:
        if optimizer is not None and group.optimizer != optimizer:
            continue
        lr = {"lr": plan.base_lr, "lr_scale": group.lr_scale} if lr_scale else {"lr": group.lr}
        out.append({
            "params": [by_name[n] for n in group.params],
            "param_names": list(group.params),
            "name": group.name,
            **lr,
            "weight_decay": group.weight_decay,
            **{k: tuple(v) if isinstance(v, list) else v for k, v in group.options.items()},
        })
    _refuse_meta(plan.source, out)
    return out


def apply_freeze(plan: Plan) -> int:
    """Set ``requires_grad=False`` on the parameters the rules freeze; returns how many changed."""
    _need_tensors(plan)
    if plan.frozen:  # a stale plan would freeze tensors the model no longer trains
        _check_tensors_current(plan)
    changed = 0
    for row in plan.rows:
        if row.status == "frozen":
            tensor = plan.tensors[row.info.index]
            if tensor.requires_grad:
                tensor.requires_grad_(False)
                changed += 1
    return changed


def apply_phase(plan: Plan, epoch: int | None = None, step: int | None = None) -> frozenset[str]:
    """Set ``requires_grad`` on the grouped parameters as the phases say at ``epoch`` (or ``step``);
    returns the names frozen (see :meth:`Plan.apply_phase`)."""
    frozen = plan.frozen_at(epoch, step)
    _need_tensors(plan)
    # Toggling the old tensors of a model whose parameters were replaced would freeze nothing it trains.
    _check_tensors_current(plan)
    for row in plan.rows:
        if row.status == "trainable":
            tensor = plan.tensors[row.info.index]
            tensor.requires_grad_(row.info.name not in frozen)
            if row.info.name in frozen:
                # A zero gradient still moves a tensor under momentum or weight decay, and
                # zero_grad(set_to_none=False) would keep one; None makes the optimizer skip it.
                tensor.grad = None
    return frozen


def _check_tensors_current(plan: Plan) -> None:
    # A parameter replaced in the model after resolution (model.fc = nn.Linear(...), to_empty(), or
    # another thread between collecting and grouping) would be handed out as the old tensor, which no
    # forward pass uses: training it changes nothing.
    module = plan.model() if plan.model is not None else None
    if module is None:
        return
    from .params import unwrap

    try:
        current = _tensor_ids(unwrap(module))
    except Exception as exc:  # the model's own parameters() raising
        raise ResolveError(f"{plan.source}: the model's parameters cannot be listed: {type(exc).__name__}: "
                           f"{str(exc)[:300]}") from None
    held = [id(t) for t in plan.tensors]
    if len(current) == len(held) and current.issuperset(held):
        return
    names = {row.info.index: row.info.name for row in plan.rows}
    gone = [names.get(i, f"#{i}") for i, t in enumerate(held) if t not in current]
    added = len(current - set(held))
    what = (f"{len(gone)} parameter(s) were replaced or removed ({', '.join(gone[:5])})" if gone
            else f"{added} parameter(s) were added")
    raise ResolveError(f"{plan.source}: {what} in the model after the plan was resolved; resolve the "
                       "rules against the model as it is now")


def _tensor_ids(model: Any) -> set[int]:
    """The identities of ``model``'s parameter tensors: a plain walk of its modules (a third of what
    ``parameters()`` costs: no generator per level, no names), or the model's own ``parameters()``
    where it overrides it."""
    from torch.nn import Module

    kind = type(model)
    if kind.parameters is not Module.parameters or kind.named_parameters is not Module.named_parameters:
        return {id(t) for t in model.parameters()}
    tensors: list[Any] = []
    stack = [model]
    while stack:
        module = stack.pop()
        if module is not None:  # a child slot set to None
            tensors.extend(module._parameters.values())
            stack.extend(module._modules.values())
    found = set(map(id, tensors))
    found.discard(id(None))  # an unset parameter slot (Linear(bias=False) keeps 'bias': None)
    return found


def _refuse_meta(source: str, groups: list[dict[str, Any]]) -> None:
    # A meta tensor has a shape and no values: an optimizer over it steps nothing, and the model's
    # to_empty() replaces every one, so even a plan resolved before it holds tensors nothing trains.
    if not any(t.is_meta for g in groups for t in g["params"]):
        return
    meta = [n for g in groups for n, t in zip(g["param_names"], g["params"]) if t.is_meta]
    raise ResolveError(
        f"{source}: {len(meta)} parameter(s) are on the meta device ({', '.join(meta[:3])}"
        f"{', ...' if len(meta) > 3 else ''}): they have a shape and no values, and an optimizer over them "
        "would train nothing; build the model on a real device (after model.to_empty(device=...), "
        "initialise it and resolve the rules again against the model as it is then)")


def _need_tensors(plan: Plan) -> None:
    if not plan.tensors:
        raise PlanProblemsError(f"{plan.source}: this plan was resolved from names only; it holds no tensors")
