"""``lrrules plot``: lr (log scale) and weight decay per parameter, coloured by rule.

matplotlib is an optional extra (``pip install 'lrrules[plot]'``); it is imported only here, and
only when a plot is asked for.
"""

from __future__ import annotations

from pathlib import Path

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
    try:
        from matplotlib.figure import Figure
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
    frozen = [a.index for a in plan.params if a.status == "frozen"]
    if frozen:
        for axis in (lr_axis, wd_axis):
            for i in frozen:
                axis.axvline(i, color="0.85", linewidth=0.6, zorder=0)
    lr_axis.set_yscale("log")
    lr_axis.set_ylabel("lr (log)")
    wd_axis.set_ylabel("weight decay")
    wd_axis.set_xlabel("parameter, in registration order" + (" (grey lines: frozen)" if frozen else ""))
    if by_rule:
        lr_axis.legend(loc="best", fontsize="small")
    lr_axis.set_title(title or plan.source)
    fig.savefig(out)
    return out
