"""Which optimizer a parameter may go to: the shape limits of known optimizers, by the type name a
rule file gives (no torch needed, so resolution refuses a tensor before anything is built).

torch's ``Muon`` orthogonalizes each update as a matrix and takes 2-D tensors only; its documentation
sends everything else to a second optimizer by hand. timm's ``muon`` falls back to AdamW for other
shapes itself, so it has no limit here.

>>> refused_shape(RuleSet.model_validate({"version": 1, "defaults": {"lr": 1e-3},
...     "optimizers": {"muon": {"type": "Muon"}}}), "muon", (10,))    # doctest: +SKIP
'takes only 2-D tensors (this one is (10,))'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .vocabulary import DEFAULT_OPTIMIZER, DEFAULT_TYPE

if TYPE_CHECKING:
    from .language import RuleSet

#: The numbers of dimensions an optimizer takes, by its type name in a rule file; absent: any.
NDIM_LIMITS: dict[str, frozenset[int]] = {
    "Muon": frozenset({2}),  # torch.optim.Muon: "only supports 2D parameters"
}


def optimizer_type(rules: RuleSet, route: str) -> str:
    """The type name of the optimizer ``route`` names (``default``: the single ``optimizer:``)."""
    if route != DEFAULT_OPTIMIZER:
        return rules.optimizers[route].type
    return rules.optimizer.type if rules.optimizer else DEFAULT_TYPE


def refused_shape(rules: RuleSet, route: str, shape: tuple[int, ...]) -> str:
    """Why optimizer ``route`` cannot take a tensor of ``shape``, or ``""`` when it can."""
    kind = optimizer_type(rules, route)
    allowed = NDIM_LIMITS.get(kind)
    if allowed is None or len(shape) in allowed:
        return ""
    dims = " or ".join(f"{n}-D" for n in sorted(allowed))
    return f"a {kind}, which takes only {dims} tensors (this one has shape {tuple(shape)})"
