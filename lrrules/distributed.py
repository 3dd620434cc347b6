"""Resolve once on the whole model, bind to the tensors each rank holds.

Interface (fixed; ``lrrules.engines`` and the docs rely on it):

- ``lrrules.bind(plan, module, prefix="") -> BoundPlan``: ``plan``, resolved on the whole model (on
  the meta device), restricted to the tensors ``module`` holds: an FSDP2- or TP-sharded module
  (DTensors: their global shapes are compared), a pipeline stage (a submodule given with its
  ``prefix``, or the whole model with the other stages deleted or set to ``None``), FSDP1 with
  ``use_orig_params=True`` (original shapes read from its flat parameters). Every setting, layer,
  ``num_layers``, unmatched and unused rule comes from the whole model. A held tensor the plan does not
  know, or of another shape, is a :class:`ResolveError` naming it. A group mixing DTensors of other
  meshes or placements with plain tensors is split: ``rest`` and ``rest@mesh(dp)[S(0)]``.
- ``lrrules.build(rules, model, plan=bound)`` builds the optimizer over a bound plan's groups;
  ``build(rules, model)`` alone splits groups the same way.
- State dicts: ``build``'s optimizer and the ``CombinedOptimizer`` save torch's layout (``state``,
  ``param_groups``); each group carries ``"lrrules": {"fingerprint", "lr", "weight_decay"}``, so DCP's
  ``get/set_optimizer_state_dict`` (flattened or not) keep the resume guard. After a resume the
  checkpoint's values stay in effect (a resumed run is bit-exact, schedules included); a setting the
  rule file now gives otherwise is reported as a :class:`ResumeWarning`, never dropped silently.
- The order: model on meta, resolve, wrap or shard, materialise, bind/build, load, apply phases. A
  phase that unfreezes a tensor DDP was built without (frozen when ``DDP(...)`` wrapped it) is refused.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ResolveError, UsageError
from .language import RuleSet
from .params import ParamInfo, clean_name, collect, unwrap
from .plan import Assignment, Group, Plan
from .resolver import MODEL_FROZEN, resolve, resolve_params
from .variables import base_shapes

if TYPE_CHECKING:
    import torch

SHOWN = 5


@dataclass(frozen=True)
class BoundPlan(Plan):
    """A :class:`Plan` restricted to one rank's tensors; its phases refuse what DDP cannot follow."""

    #: Names of the tensors a DistributedDataParallel wrapper was built without (frozen then).
    unreduced: frozenset[str] = frozenset()

    def apply_phase(self, epoch: int | None = None, step: int | None = None) -> frozenset[str]:
        frozen = self.frozen_at(epoch, step)
        late = sorted(a.name for a in self.params if a.status == "trainable" and a.name in self.unreduced
                      and a.name not in frozen)
        if late:
            raise ResolveError(
                f"{self.source}: a phase unfreezes {_listed(late)}, which was frozen when "
                "DistributedDataParallel wrapped the model: DDP never reduces its gradient, so the ranks "
                "would diverge; leave it trainable when wrapping (resolve, wrap, build, load, then phases "
                "freeze it) and wrap with find_unused_parameters=True")
        return super().apply_phase(epoch, step)


def bind(plan: Plan, module: torch.nn.Module, prefix: str = "") -> BoundPlan:
    """``plan`` restricted to the parameters ``module`` holds, named ``prefix`` + their name.

    >>> plan = lrrules.bind(lrrules.resolve(rules, whole_model_on_meta), stage, prefix="layers.4.")  # doctest: +SKIP
    """
    if not plan.params:
        raise ResolveError(f"{plan.source}: this plan holds no parameters to bind")
    infos, tensors = collect(unwrap(module))
    flat = _fsdp1_shapes(module)
    known = {n: a for a in plan.params for n in (a.name, *a.aliases)}
    rows: list[tuple[Assignment, Any]] = []
    unknown, wrong = [], []
    for info, tensor in zip(infos, tensors):
        name = prefix + info.name
        if name.rpartition(".")[2] == "_flat_param":
            raise ResolveError(f"'{name}' is FSDP1's flat parameter (use_orig_params=False): one tensor holding "
                               "many parameters can take one setting only; wrap with use_orig_params=True and "
                               "bind, or shard with FSDP2 (fully_shard)")
        found = known.get(name)
        shape = flat.get(info.name, info.shape)
        if found is None:
            unknown.append(name)
        elif tuple(shape) != found.shape:
            wrong.append(f"'{name}' {tuple(shape)} (the plan's {found.shape})")
        else:
            rows.append((found, tensor))
    if unknown:
        raise ResolveError(f"{plan.source}: {len(unknown)} parameter(s) of the module are not in the plan: "
                           f"{_listed(unknown)}; resolve on the whole model (names as there"
                           f"{'' if prefix else '; a stage given alone needs its prefix='})")
    if wrong:
        raise ResolveError(f"{plan.source}: {len(wrong)} parameter(s) have another shape than in the plan: "
                           f"{_listed(wrong)}; resolve on the model these tensors come from")
    rows.sort(key=lambda row: row[0].index)
    return split(restricted(plan, rows, module), ddp_unreduced(module))


def placed(ruleset: RuleSet, model: torch.nn.Module, plan: Plan | None = None, base: Any = None) -> BoundPlan:
    """The plan :func:`lrrules.build` makes its groups from: ``plan`` bound to ``model``, else the
    rules resolved on ``model``, its groups split by DTensor kind (FSDP1 refused: each rank would
    resolve its own 1-D views). A stage resolved alone is warned about."""
    if plan is not None:
        return bind(plan, model)
    if is_fsdp1(model):
        raise UsageError("FSDP1 (FullyShardedDataParallel) shows each rank flat views of its shard; resolve on the "
                         "model before wrapping, then lrrules.build(rules, model, plan=plan)")
    bound = split(_phased(ruleset, resolve(ruleset, model, base), model, base), ddp_unreduced(model))
    stage = stage_caution(bound.infos) if bound.num_layers else None
    if stage:
        warnings.warn(f"{ruleset.path}: {stage}", stacklevel=3)
    return bound


def _phased(ruleset: RuleSet, plan: Plan, model: torch.nn.Module, base: Any) -> Plan:
    """``plan`` with the tensors a phase governs in their groups even where the model has them frozen
    (a phase applied before build): left out, the phase that unfreezes them would find nothing."""
    frozen = {f.param for f in plan.frozen if f.reason == MODEL_FROZEN}
    if not ruleset.phases or not frozen:
        return plan
    infos = [i._replace(requires_grad=True) if i.name in frozen else i for i in plan.infos]
    whole = resolve_params(ruleset, infos, plan.tensors, model, base=None if base is None else base_shapes(base))
    governed = frozen & {n for p in whole.phases for n in (*p.freeze, *p.unfreeze)}
    if governed != frozen:
        infos = [i._replace(requires_grad=True) if i.name in governed else i for i in plan.infos]
        whole = resolve_params(ruleset, infos, plan.tensors, model, base=None if base is None else base_shapes(base))
    return dataclasses.replace(whole, model=plan.model) if governed else plan


def restricted(plan: Plan, rows: Sequence[tuple[Assignment, Any]], module: Any) -> Plan:
    """``plan`` with only ``rows`` (its assignments, in order, with the tensors now holding them)."""
    index = {a.name: k for k, (a, _) in enumerate(rows)}
    groups: list[Group] = []
    group_of: dict[int, int] = {}
    for g in plan.groups:
        mine = tuple(n for n in g.params if n in index)
        if mine:
            group_of[g.index] = len(groups)
            groups.append(dataclasses.replace(g, index=len(groups), params=mine,
                                              numel=sum(rows[index[n]][0].numel for n in mine)))
    params = tuple(a._replace(index=k, group=group_of.get(a.group) if a.group is not None else None)
                   for k, (a, _) in enumerate(rows))
    infos = tuple(plan.infos[a.index]._replace(index=k) for k, (a, _) in enumerate(rows)) if plan.infos else ()
    return dataclasses.replace(plan, params=params, groups=tuple(groups), tensors=tuple(t for _, t in rows),
                               infos=infos, frozen=tuple(f for f in plan.frozen if f.param in index),
                               model=weakref.ref(module))


def split(plan: Plan, unreduced: frozenset[str] = frozenset()) -> BoundPlan:
    """``plan`` with each group that mixes DTensor meshes or placements (or DTensors with plain
    tensors) split into one group per kind: foreach optimizer steps refuse a mix."""
    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(Plan)}
    if not needs_split(plan):
        return BoundPlan(**fields, unreduced=unreduced)
    tensor_of = {a.name: plan.tensors[a.index] for a in plan.params}
    groups: list[Group] = []
    group_of: dict[str, int] = {}
    for g in plan.groups:
        kinds: dict[Any, list[str]] = {}
        for name in g.params:
            kinds.setdefault(_kind(tensor_of.get(name)), []).append(name)
        numel = {a.name: a.numel for a in plan.params} if len(kinds) > 1 else {}
        for kind, names in kinds.items():
            label = g.name if len(kinds) == 1 or kind is None else f"{g.name}@{kind[0]}"
            label += f"#{len(groups)}" if any(x.name == label for x in groups) else ""
            group_of.update((n, len(groups)) for n in names)
            groups.append(dataclasses.replace(g, index=len(groups), name=label, params=tuple(names),
                                              numel=sum(numel[n] for n in names) if numel else g.numel))
    fields["params"] = tuple(a._replace(group=group_of.get(a.name)) if a.group is not None else a for a in plan.params)
    return BoundPlan(**{**fields, "groups": tuple(groups)}, unreduced=unreduced)


def _kind(tensor: Any) -> Any:
    """``None`` for a plain tensor; a DTensor's mesh and placements, readable first."""
    mesh = getattr(tensor, "device_mesh", None)
    if mesh is None or not hasattr(tensor, "placements"):
        return None
    dims = ",".join(mesh.mesh_dim_names or ["x".join(map(str, mesh.shape))])
    return f"mesh({dims})[{','.join(map(str, tensor.placements))}]", tuple(mesh.mesh.flatten().tolist())


def _fsdp1_shapes(module: Any) -> dict[str, tuple[int, ...]]:
    """The original shape of each parameter FSDP1 flattened (its flat parameters' ``_fqns`` and
    ``_shapes``), by name: with ``use_orig_params=True`` a rank sees 1-D views of its shard."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path, child in unwrap(module).named_modules():
        flat = getattr(child, "_flat_param", None)
        for fqn, shape in zip(getattr(flat, "_fqns", ()), getattr(flat, "_shapes", ())):
            shapes[clean_name(f"{path}.{fqn}" if path else fqn)] = tuple(shape)
    return shapes


def is_fsdp1(model: Any) -> bool:
    """Whether ``model`` holds FSDP1 units (``FullyShardedDataParallel``), whose parameters a rank sees flattened."""
    return any(type(m).__name__ == "FullyShardedDataParallel" for m in model.modules())


def ddp_unreduced(model: Any) -> frozenset[str]:
    """The names of the parameters a DistributedDataParallel wrapper in ``model`` was built without:
    frozen (``requires_grad=False``) now, as they were when it was built if the order was followed."""
    if not any("DistributedDataParallel" in {k.__name__ for k in type(m).__mro__} for m in model.modules()):
        return frozenset()
    infos, tensors = collect(model)
    return frozenset(n for info, t in zip(infos, tensors) if not t.requires_grad for n in info.names)


def needs_split(plan: Plan) -> bool:
    """Whether any of the plan's tensors is a DTensor (only then can a group mix kinds)."""
    return any(hasattr(t, "device_mesh") for t in plan.tensors)


def stage_caution(params: Sequence[ParamInfo]) -> str | None:
    """The caution for parameters numbered like one pipeline stage (``layers.4`` to ``layers.7``, no
    ``layers.0``): ``depth`` and ``num_layers`` would count this stage's blocks only."""
    numbers: dict[str, set[int]] = {}
    for p in params:
        for found in _NUMBERED.finditer(p.name):
            numbers.setdefault(found["at"], set()).add(int(found["n"]))
    for at, seen in numbers.items():
        if min(seen) > 0 and len(seen) > 1 and max(seen) - min(seen) + 1 == len(seen):
            return (f"the blocks under '{at}' are numbered {min(seen)} to {max(seen)} (no {at}0): this looks like "
                    "one pipeline stage, whose depth and num_layers count its own blocks only; resolve on the "
                    "whole model (on the meta device) and lrrules.bind(plan, stage)")
    return None


_NUMBERED = re.compile(r"^(?P<at>(?:[^.]+\.)*?[^.\d][^.]*\.)(?P<n>\d+)\.")


def _listed(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" if not n.startswith("'") else n for n in names[:SHOWN]) + (
        f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


