"""``lrrules plot``: lr (log scale) and weight decay per parameter, coloured by rule. matplotlib is
an optional extra (``pip install 'lrrules[plot]'``), imported only when a plot is asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UsageError
from .plan import Plan

SUFFIXES = (".png", ".svg", ".pdf")


def plot(plan: Plan, out: str | Path, title: str = "") -> Path:
    """Draw ``plan`` into ``out`` (.png, .svg or .pdf); returns the path written.

    >>> plot(lrrules.load("rules.yaml").resolve(model), "lr.png")     # doctest: +SKIP
    """
    out = Path(out)
    if out.suffix.lower() not in SUFFIXES:
        raise UsageError(f"{out}: the plot is written as {', '.join(SUFFIXES)}; name the file so")
    figure(plan, title).savefig(out)
    return out


#: At most this many parameter names label the x-axis of a plan without layers.
NAME_TICKS = 24


def figure(plan: Plan, title: str = "") -> Any:
    """The plot of ``plan`` as a matplotlib Figure: lr (log) over weight decay, a point per parameter
    in registration order coloured by rule, grey lines where one is frozen (by a rule, or the phases
    at ``plan.when``); the x-axis labelled with layers, else names; a constant panel shows its value."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import NullLocator
    except ImportError:
        raise UsageError("plot needs matplotlib, an optional extra: pip install 'lrrules[plot]'") from None

    fig = Figure(figsize=(10, 6), layout="constrained")
    lr_axis, wd_axis = fig.subplots(2, 1, sharex=True)
    by_rule: dict[str, list[tuple[int, float, float]]] = {}
    for a in plan.params:
        if a.lr is not None and a.weight_decay is not None:
            by_rule.setdefault(a.rule or "(defaults)", []).append((a.index, a.lr, a.weight_decay))
    for rule, points in by_rule.items():
        index, lr, wd = zip(*points)
        lr_axis.scatter(index, [max(v, 1e-30) for v in lr], s=10, label=rule)
        wd_axis.scatter(index, wd, s=10, label=rule)
    frozen = [a.index for a in plan.params if a.status == "frozen" or not a.trains]
    for axis in (lr_axis, wd_axis):
        for i in frozen:
            axis.axvline(i, color="0.85", linewidth=0.6, zorder=0)
    lr_axis.set_yscale("log")
    lr_axis.set_ylabel("lr (log)")
    wd_axis.set_ylabel("weight decay")
    for axis, values in ((lr_axis, [p[1] for ps in by_rule.values() for p in ps]),
                         (wd_axis, [p[2] for ps in by_rule.values() for p in ps])):
        if values and len(set(values)) == 1:  # a constant panel: its value, not a scale of empty ticks
            axis.set_yticks([max(values[0], 1e-30) if axis is lr_axis else values[0]])
            axis.yaxis.set_minor_locator(NullLocator())
    layers = [(a.index, a.layer) for a in plan.params if a.layer is not None]
    if layers:
        firsts: dict[int, int] = {}
        for at, layer in layers:
            firsts.setdefault(layer, at)
        step = max(1, -(-len(firsts) // NAME_TICKS))
        shown = sorted(firsts.items())[::step]
        wd_axis.set_xticks([at for _, at in shown], [str(layer) for layer, _ in shown])
        wd_axis.set_xlabel("layer (a tick at each layer's first parameter)")
    else:
        step = max(1, -(-len(plan.params) // NAME_TICKS))
        shown_params = plan.params[::step]
        wd_axis.set_xticks([a.index for a in shown_params], [a.name for a in shown_params], rotation=90,
                           fontsize="x-small")
        wd_axis.set_xlabel("parameter, in registration order")
    if frozen:
        wd_axis.set_xlabel(wd_axis.get_xlabel() + " (grey lines: frozen" +
                           (f", by the phases at {plan.when})" if plan.phase_frozen else ")"))
    if by_rule:
        lr_axis.legend(loc="best", fontsize="small")
    lr_axis.set_title(title or plan.source)
    return fig
