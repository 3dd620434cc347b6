"""What a resolution saw that is likely a mistake (:attr:`~lrrules.plan.Plan.cautions`): a model that
looks wrapped, a layering too coarse for the formulas that read it, an lr rounded to 0, and a head
or embedding routed to a Muon. Each is a warning; ``check --strict`` fails on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .formula import compile_formula
from .params import wrapped_prefix
from .routes import optimizer_type

if TYPE_CHECKING:
    from .language import RuleSet
    from .params import ParamInfo
    from .plan import Assignment, Group, Step

#: The roles Muon is not for (its README: embeddings and heads belong to AdamW).
OFF_MUON = ("head", "embedding")
#: Fewer layers than this make `decay ** depth` one or two rates: layer decay that does nothing.
MIN_LAYERS = 3


def underflowed_groups(groups: Sequence[Group], assignments: Sequence[Assignment]) -> dict[int, tuple[Step, ...]]:
    """The groups whose lr rounded to 0 though nothing the file wrote is 0 (``0.5 ** depth`` over
    thousands of layers), each with its lr steps; a 0 written, or a formula's exact 0, is meant."""
    zero = {g.index for g in groups if g.lr == 0.0}
    found: dict[int, tuple[Step, ...]] = {}
    for a in assignments:
        if a.group not in zero:
            continue
        zero.discard(a.group)
        steps = tuple(st for st in a.steps if st.setting in ("lr", "lr_mult"))
        if not any(st.value == 0 and (st.formula is None or not compile_formula(st.formula, None).underflows(
                st.variables)) for st in steps):
            found[a.group] = steps
    return found


def underflow_caution(group: Group) -> str:
    """The warning for a group whose lr rounded to 0."""
    names = ", ".join(f"'{n}'" for n in group.params[:3]) + (
        f" and {len(group.params) - 3} more" if len(group.params) > 3 else "")
    return (f"{names}: the lr rounds to 0 (group '{group.name}', made by {', '.join(group.rules)}), below the "
            "smallest float though no factor is 0: a lr of 0 trains nothing, a frozen tensor in disguise; "
            "freeze it ('freeze: true') if that is meant, or bound the multiplier (max(..., 1e-6))")


def model_cautions(rules: RuleSet, params: Sequence[ParamInfo], num_layers: int, reads: frozenset[str]) -> tuple[str, ...]:
    """Warnings about the model and the layering (as timm warns when its layer decay has one layer)."""
    out = []
    prefix = wrapped_prefix(params)
    if prefix is not None:
        out.append(f"every parameter name starts with '{prefix}': the model looks wrapped in something lrrules "
                   "does not unwrap; pass the inner model (model.module) so that anchored rules match")
    used = sorted(reads & {"layer", "depth", "num_layers"})
    # A layering the user listed (by: patterns) has the layers they meant, however few.
    if used and num_layers < MIN_LAYERS and len(params) >= MIN_LAYERS and rules.layers.by != "patterns":
        strategy = rules.layers.by
        instead = ("'layers: {by: patterns, ...}' to name the layers by hand" if strategy == "blocks" else
                   "'layers: {by: blocks}' (the repeated block stacks, any model) or 'by: timm' on a model "
                   "timm groups")
        out.append(f"the formulas read {', '.join(used)}, but layers 'by: {strategy}' puts this model in "
                   f"{num_layers} layer(s), so they give at most {num_layers} values; use {instead}")
    return tuple(out)


def muon_route_cautions(rules: RuleSet, params: Sequence[ParamInfo], groups: Sequence[Group]) -> list[str]:
    """A warning for each head or embedding tensor (by role) routed to a Muon (``Muon``,
    ``SingleDeviceMuon``, timm's ``muon``); ``check --strict`` fails on them."""
    by_name = {p.name: p for p in params}
    out = []
    for group in groups:
        kind = optimizer_type(rules, group.optimizer)
        if not kind.lower().endswith("muon"):
            continue
        for name in group.params:
            found = [(role, why) for role, why in by_name[name].roles if role in OFF_MUON]
            if found:
                role, why = found[0]
                out.append(f"'{name}' is the {role} ({why}) and is routed to optimizer '{group.optimizer}' (a {kind}); "
                           "Muon is for hidden matrices, heads and embeddings belong to AdamW: exclude it with "
                           "{not: {role: [head, embedding]}} or match {role: hidden}")
    return out

