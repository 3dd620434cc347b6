"""DeepSpeed (not a dependency, never imported here): what ZeRO keeps of a plan, and the resume guard.

ZeRO stages 1 and 2 keep every param group (one flat partition per group, with the group's lr and
weight decay), but they save the optimizer state as flat vectors and load them back by position:
a rule edit that trades same-size tensors between groups would load moments onto other tensors.
The plan's layout goes into the checkpoint's ``client_state`` and is checked on load. Phases cannot
hold under ZeRO (see :func:`deepspeed_groups`), so they are refused.
"""

from __future__ import annotations

import warnings
from typing import Any

from .errors import ResumeError, UsageError
from .plan import Plan
from .resume import RECORD_KEY, ResumeReport, ResumeWarning, changes, check_layout, layout


def deepspeed_groups(plan: Plan) -> list[dict[str, Any]]:
    """``plan.param_groups()`` for ``deepspeed.initialize(model_parameters=...)``; a plan with phases
    is refused: ZeRO flattens the tensors that require grad when the engine is made, so a tensor a
    later phase unfreezes never trains, and it zero-fills a frozen tensor's gradient, so weight decay
    and the moments still move a tensor a phase freezes.

    >>> engine, *_ = deepspeed.initialize(model=model, model_parameters=deepspeed_groups(plan), config=cfg)  # doctest: +SKIP
    """
    _refuse_phases(plan)
    return plan.param_groups()


def deepspeed_client_state(plan: Plan) -> dict[str, Any]:
    """The plan's group layout for ``engine.save_checkpoint(dir, client_state=...)`` (merge your own
    keys in): :func:`load_deepspeed_checkpoint` checks it on load.

    >>> engine.save_checkpoint("ckpt", client_state=deepspeed_client_state(plan))   # doctest: +SKIP
    """
    _refuse_phases(plan)
    return {RECORD_KEY: {"fingerprint": plan.fingerprint, "groups": layout(plan)}}


def load_deepspeed_checkpoint(engine: Any, load_dir: str, plan: Plan, tag: str | None = None) -> ResumeReport:
    """``engine.load_checkpoint(load_dir, tag)`` once the saved layout is checked against ``plan``'s:
    :class:`ResumeError` naming each parameter that moved between groups or changed shape, before any
    optimizer state is loaded (the module's weights are). The checkpoint's lrs stay in effect, as
    DeepSpeed loads them; a setting the rules now give otherwise is warned about and listed.

    >>> report = load_deepspeed_checkpoint(engine, "ckpt", plan)   # doctest: +SKIP
    """
    _refuse_phases(plan)
    # The module first: it brings the client state, and the layout is checked before ZeRO loads its
    # flat state (by position) and before DeepSpeed's own checks, which name no parameter.
    path, client_state = engine.load_checkpoint(load_dir, tag, load_module_only=True)
    if path is None:
        raise ResumeError(f"DeepSpeed found no checkpoint in {load_dir!r}")
    saved = (client_state or {}).get(RECORD_KEY)
    if saved is None:
        raise ResumeError("this DeepSpeed checkpoint carries no lrrules layout: save it with "
                          "engine.save_checkpoint(dir, client_state=lrrules.engines.deepspeed_client_state(plan))")
    groups = layout(plan)
    check_layout(saved, groups, plan.fingerprint, "the DeepSpeed checkpoint (ZeRO loads its flat state by position)")
    base = getattr(engine.optimizer, "optimizer", engine.optimizer)
    # An optimizer lrrules built checks torch's per-tensor state on load; ZeRO hands it flat
    # partitions (one tensor per group), which that check would refuse: the record was checked above.
    hooks = getattr(base, "_optimizer_load_state_dict_pre_hooks", {})
    ours = {k: h for k, h in hooks.items() if getattr(h, "__module__", "").startswith("lrrules.")}
    for key in ours:
        del hooks[key]
    try:
        engine.load_checkpoint(load_dir, tag)
    finally:
        hooks.update(ours)
    report = ResumeReport(plan.fingerprint, changes(saved["groups"], groups))
    if report.changed:
        warnings.warn(ResumeWarning(str(report)), stacklevel=2)
    return report


def _refuse_phases(plan: Plan) -> None:
    if any(p.freeze or p.unfreeze for p in plan.phases):
        raise UsageError(
            f"{plan.source}: phases cannot hold under DeepSpeed ZeRO: it flattens the tensors that require grad "
            "when the engine is made (a tensor a later phase unfreezes never trains) and zero-fills the gradient "
            "of a frozen one (weight decay and the moments still move it); freeze with 'freeze: true', or "
            "train the phases under DDP or FSDP2")
