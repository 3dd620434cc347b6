"""Reports of a :class:`~lrrules.plan.Plan` for people (a table) and for programs (JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .plan import Plan

#: How many names a problem list shows before it says how many more there are.
SHOWN = 20


def to_json(plan: Plan) -> str:
    """The plan as JSON: ``{groups, params, unmatched, conflicts, frozen, unused_rules, ...}``."""
    return json.dumps(plan.to_dict(), indent=2)


def to_table(plan: Plan, title: str = "") -> str:
    """The groups as an aligned table, then every problem and warning.

    >>> print(to_table(plan))                                   # doctest: +SKIP
    """
    lines = []
    if title:
        lines.append(title)
    base = f"base lr {_num(plan.base_lr)}, base weight decay {_num(plan.base_weight_decay)}"
    lines.append(base + "".join(f", {k} {_value(v)}" for k, v in plan.base_options.items()))
    header = ["group", "lr", "lr_scale", "weight_decay", "options", "tensors", "elements", "rules"]
    rows = [
        [
            str(g.index),
            _num(g.lr),
            _num(g.lr_scale),
            _num(g.weight_decay),
            # Options equal to the defaults' hold in every group; only the differences are news.
            ", ".join(f"{k}={_value(v)}" for k, v in g.options.items() if plan.base_options.get(k) != v) or "-",
            str(len(g.params)),
            f"{g.numel:,}",
            ", ".join(g.rules),
        ]
        for g in plan.groups
    ]
    lines += _align([header, *rows])
    trainable = sum(len(g.params) for g in plan.groups)
    lines.append(f"{len(plan.groups)} groups, {trainable} trainable tensors, "
                 f"{sum(g.numel for g in plan.groups):,} trainable elements")
    if plan.frozen:
        numel = sum(a.numel for a in plan.params if a.status == "frozen")
        lines.append(f"frozen: {len(plan.frozen)} tensors, {numel:,} elements")
        reasons: dict[str, list[str]] = {}
        for f in plan.frozen:
            reasons.setdefault(f.reason, []).append(f.param)
        for reason, names in reasons.items():
            lines.append(f"  {reason}: {_names(names)}")
    if plan.unmatched:
        label = "error" if plan.unmatched_mode == "error" else "given the defaults"
        lines.append(f"unmatched ({label}): {len(plan.unmatched)} tensors claimed by no rule")
        lines += [f"  {n}" for n in _cut(plan.unmatched)]
    if plan.conflicts:
        lines.append(f"conflicts (error): {len(plan.conflicts)}")
        lines += [f"  {c.message}" for c in _cut(plan.conflicts)]
    for warning in plan.warnings():
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def _cut(items: Sequence[Any]) -> list[Any]:
    shown = list(items[:SHOWN])
    if len(items) > SHOWN:
        shown.append(f"... and {len(items) - SHOWN} more (see --format json)")
    return shown


def _names(names: Sequence[str]) -> str:
    text = ", ".join(names[:SHOWN])
    return text + (f", ... and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _num(value: float) -> str:
    return f"{value:.4g}"


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_value(v) for v in value) + ")"
    if isinstance(value, float):
        return _num(value)
    return str(value)


def _align(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
