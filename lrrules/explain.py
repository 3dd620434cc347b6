"""Accounts of single parameters: why each gets its settings (``explain``), and how they change
between two rule files (``diff``), as text and as rows."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import printable
from .plan import Assignment, Change, Plan
from .report import claimed_by
from .roles import describe
from .tables import Column, fit, fmt_num, fmt_value


# --- explain -----------------------------------------------------------------------------------


def explained(plan: Plan, pattern: str) -> list[Assignment]:
    """The parameters whose name (or one of their names) matches the glob ``pattern``."""
    compiled = re.compile(fnmatch.translate(pattern))
    return [a for a in plan.params if any(compiled.match(n) for n in (a.name, *a.aliases))]


def explain_rows(plan: Plan, chosen: Sequence[Assignment], types: Mapping[str, str]) -> list[dict[str, Any]]:
    """``explain``'s JSON: each chosen parameter with its optimizer, that optimizer's type (``types``:
    :func:`lrrules.check.optimizer_types`) and its roles with their evidence (``None`` on a checkpoint)."""
    infos = plan.infos
    out = []
    for a in chosen:
        route = plan.groups[a.group].optimizer if a.group is not None else None
        roles = dict(infos[a.index].roles) if infos[a.index].module is not None else None
        out.append(dict(a.to_dict(), optimizer=route, optimizer_type=types.get(route) if route else None, roles=roles))
    return out


def explain_text(plan: Plan, chosen: Sequence[Assignment], hints: Mapping[str, str] | None = None,
                 optimizers: Mapping[str, str] | None = None) -> str:
    """For each ``chosen`` parameter: what matched and captured, each formula with its variables, the
    optimizer it goes to (with its type from ``optimizers``), the final settings; under a conflict, the
    ``hints`` of its rules (:func:`lrrules.lint.modifier_hints`).

    >>> print(explain_text(plan, explained(plan, "lm_head.*"), optimizers={"default": "AdamW"}))  # doctest: +SKIP
    """
    conflicts = {c.param: c for c in plan.conflicts}
    blocks = []
    for a in chosen:
        shape = "x".join(map(str, a.shape)) or "scalar"
        lines = [f"{a.name}  [{shape}, {a.module or 'no module'}]"]
        if a.aliases:
            lines.append(f"  also named: {', '.join(a.aliases)}")
        lines.append(f"  roles: {describe(plan.infos[a.index])}")
        if a.layer is not None:
            lines.append(f"  layer {a.layer} of {plan.num_layers} (depth {plan.num_layers - 1 - a.layer})")
        if a.status == "conflict":
            lines.append(f"  CONFLICT: {conflicts[a.name].message}")
            if conflicts[a.name].kind == "rules":
                lines += [f"  {line}" for r in conflicts[a.name].rules if r in (hints or {})
                          for line in (hints or {})[r].splitlines()]
        elif a.status == "unmatched":
            lines.append("  UNMATCHED: claimed by no rule")
        elif a.status == "frozen":
            claimed = f" (claimed by rule '{a.rule}')" if a.rule and f"'{a.rule}'" not in a.note else ""
            lines.append(f"  frozen: {a.note}{claimed}")
        else:
            lines.append(f"  rule: {claimed_by(a)}" if a.rule else f"  rule: none ({a.note})")
            if a.modifiers:
                lines.append(f"  modifiers: {', '.join(a.modifiers)}")
            if a.captures:
                lines.append("  captured: " + ", ".join(f"{k}={v!r}" for k, v in a.captures.items()))
            for step in a.steps:
                if step.formula is None:
                    lines.append(f"  {step.entry}: {step.setting} = {fmt_value(step.value)}")
                else:
                    filled = ", ".join(f"{k}={v!r}" for k, v in step.variables.items())
                    where = f" with {filled}" if filled else ""
                    lines.append(f"  {step.entry}: {step.setting} = {step.formula}{where} -> {fmt_num(step.value)}")
            lines += [f"  phase {p.index} (from {p.when}) {verb} it" for p in plan.phases
                      for verb, names in (("freezes", p.freeze), ("unfreezes", p.unfreeze)) if a.name in names]
            if not a.trains:
                lines.append(f"  frozen by the phases at {plan.when} (it keeps its group)")
            if a.group is not None:
                route = plan.groups[a.group].optimizer
                kind = (optimizers or {}).get(route)
                lines.append(f"  optimizer: {route}" + (f" ({kind})" if kind else ""))
            final = (f"  => lr {fmt_num(a.lr or 0.0)} (x{fmt_num(a.lr_scale or 0.0)} base), "
                     f"weight_decay {fmt_num(a.weight_decay or 0.0)}")
            if a.options:
                final += ", " + ", ".join(f"{k} {fmt_value(v)}" for k, v in a.options.items())
            lines.append(final + f", group {a.group}")
        blocks.append("\n".join(printable(line) for line in lines))
    return "\n\n".join(blocks)


# --- diff --------------------------------------------------------------------------------------


def diff_table(changes: Sequence[Change], old: str, new: str,
               summary_rows: Sequence[dict[str, Any]] | None = None, width: int | None = None,
               unicode: bool = True) -> str:
    """The changes a row per parameter and setting, or per rule and setting given ``summary_rows``
    (:func:`diff_summary`). Narrowed to ``width``, the files' columns are headed ``old`` and ``new``
    (named above) and the examples column goes first; values are never cut."""
    if not changes:
        return printable(f"no parameter's settings differ between {old} and {new}")
    count = len({c.param for c in changes if not c.param.startswith("(")})
    if summary_rows is not None:
        columns = [
            Column("rule", [r["rule"] for r in summary_rows], "text"),
            Column("setting", [r["setting"] for r in summary_rows]),
            Column(old, [_values(r["old"]) for r in summary_rows], short="old"),
            Column(new, [_values(r["new"]) for r in summary_rows], short="new"),
            Column("tensors", [str(r["count"] or "-") for r in summary_rows], short="n"),
            Column("for example", [_first(r["params"]) for r in summary_rows], "text", drop=2),
        ]
    else:
        columns = [
            Column("param", [c.param for c in changes], "text"),
            Column("setting", [c.setting for c in changes]),
            Column(old, [fmt_value(c.old) for c in changes], short="old"),
            Column(new, [fmt_value(c.new) for c in changes], short="new"),
        ]
    lines = fit(columns, width, unicode)
    if columns[2].header != old:  # shortened to fit: say which file is which
        lines = [printable(f"old: {old}"), printable(f"new: {new}"), *lines]
    return "\n".join(lines + [f"{count} parameters differ"])


def diff_summary(changes: Sequence[Change], old_plan: Plan, new_plan: Plan) -> list[dict[str, Any]]:
    """The changes grouped by the rule claiming the parameter (in the new plan, else the old) and by
    setting: a row each with the distinct old and new values, the count and the parameters in model
    order; the optimizer's own changes as rows ``(optimizer)`` and ``(defaults)``, with no parameters."""
    rule = {a.name: a.rule or a.status for a in old_plan.params}
    rule.update({a.name: a.rule or a.status for a in new_plan.params})
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for c in changes:
        whole = c.param.startswith("(")
        owner = c.param if whole else rule.get(c.param, "-")
        row = grouped.setdefault((owner, c.setting), {"rule": owner, "setting": c.setting, "old": [], "new": [],
                                                      "count": 0, "params": []})
        for side, value in (("old", c.old), ("new", c.new)):
            if value not in row[side]:
                row[side].append(value)
        if not whole:
            row["count"] += 1
            row["params"].append(c.param)
    return list(grouped.values())


def _values(values: Sequence[Any]) -> str:
    """One value as it is; several as their range and count (numbers) or a list."""
    if len(values) == 1:
        return fmt_value(values[0])
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) == len(values):
        return f"{fmt_num(min(numbers))}..{fmt_num(max(numbers))} ({len(values)} values)"
    return ", ".join(fmt_value(v) for v in values)


def _first(names: Sequence[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (f", ... ({len(names) - shown} more)" if len(names) > shown else "")
