"""What a resolution saw that is likely a mistake (:attr:`~lrrules.plan.Plan.cautions`): names that
look wrapped, a layering too coarse, an lr rounded to 0, a head routed to a Muon (``check --strict`` fails)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import MatchError
from .formula import compile_formula
from .params import WRAPPER_PREFIXES, wrapped_prefix
from .routes import optimizer_type

if TYPE_CHECKING:
    from .compile import Entry
    from .language import RuleSet
    from .params import ParamInfo
    from .plan import Assignment, Group, Step

#: The roles Muon is not for (its README: embeddings and heads belong to AdamW).
OFF_MUON = ("head", "embedding")
#: Fewer layers than this make `decay ** depth` one or two rates: layer decay that does nothing.
MIN_LAYERS = 3


def underflowed_groups(groups: Sequence[Group], assignments: Sequence[Assignment]) -> dict[int, tuple[Step, ...]]:
    """The groups whose lr rounded to 0 (``0.5 ** depth`` over thousands of layers) though no factor is 0."""
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
    """A warning for each head or embedding tensor (by role) routed to a Muon (torch's, timm's)."""
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



#: The share of names a prefix must start (a loss module's tensors beside a LightningModule's ``model``).
PREFIX_SHARE = 0.9


def shared_prefixes(names: Sequence[str]) -> list[str]:
    """The runs of whole leading name parts that nine names in ten share (Lightning's ``model.``,
    peft's ``base_model.model.``), shortest first.

    >>> shared_prefixes(["model.fc.weight", "model.fc.bias", "model.head.weight"])
    ['model.']
    """
    found = [""]
    while True:
        prefix = found[-1]
        rest = Counter(n[len(prefix):].split(".", 1)[0] for n in names
                       if n.startswith(prefix) and "." in n[len(prefix):])
        part, count = rest.most_common(1)[0] if rest else ("", 0)
        if count < PREFIX_SHARE * len(names):
            return found[1:]
        found.append(prefix + part + ".")


def prefix_caution(params: Sequence[ParamInfo], unused: Sequence[Entry], unmatched: int) -> str | None:
    """The hint for names wrapped in one prefix (``build(rules, self)`` in a LightningModule gives
    ``model.``; peft ``base_model.model.``) when rules that match nothing as written would match
    names without it (the shortest such prefix): else dozens of "claimed by no rule" lines say nothing of why."""
    for prefix in shared_prefixes([p.name for p in params]) if unused and len(params) > 1 else []:
        if any(prefix.startswith(w) for w in WRAPPER_PREFIXES):
            return None  # the wrapped-model caution says it
        inner = [p._replace(name=p.name[len(prefix):], aliases=()) for p in params if p.name.startswith(prefix)]
        would = [e.name for e in unused if any(_matches(e, p) for p in inner)]
        if would:
            path = prefix[:-1]
            strip = (f"self.{path}" if all(part.isidentifier() for part in path.split("."))
                     else f"model.get_submodule('{path}')")
            lost = f"{unmatched} tensors are claimed by no rule and " if unmatched else ""
            return (f"every name starts with '{prefix}'; {lost}{_names(would)} nothing as written and would "
                    f"match without it: strip it (e.g. build(rules, {strip})) or match it ('{prefix}*')")
    return None


def _matches(entry: Entry, param: ParamInfo) -> bool:
    try:
        return entry.matcher is not None and entry.matcher.match(param) is not None
    except MatchError:  # a matcher this source cannot answer says so where it is resolved
        return False


def _names(entries: Sequence[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    return f"rules {shown} match" if len(entries) > 1 else f"rule {shown} matches"
