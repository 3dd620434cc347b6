"""Reports of what the library made, for people (tables) and programs (rows for JSON, YAML, CSV,
GitHub annotations): a Plan's groups and problems, a model's parameters, ``check``'s findings,
``show``'s file; each a function from data to text built with :mod:`lrrules.tables`."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import printable
from .params import ParamInfo
from .plan import Assignment, Plan, nothing_trains
from .tables import Column, fit, fmt_num, fmt_value, log_bottom, lr_bar, to_json

if TYPE_CHECKING:
    from .check import Finding
    from .language import RuleSet

SHOWN = 20  # names a problem list shows before it says how many more there are


# --- plans -------------------------------------------------------------------------------------


def plan_rows(plan: Plan, per_param: bool) -> list[dict[str, Any]]:
    """One row per group, or per parameter, for CSV, each naming the optimizer its group goes to."""
    if per_param:
        keys = ("name", "shape", "module", "layer", "status", "trains", "group", "rule", "modifiers", "lr",
                "lr_scale", "weight_decay", "options")
        route = {g.index: g.optimizer for g in plan.groups}
        return [{**{k: d[k] for k in keys}, "optimizer": route.get(d["group"])}
                for d in (a.to_dict() for a in plan.params)]
    return [{**g.to_dict(), "params": len(g.params)} for g in plan.groups]



def plan_table(plan: Plan, title: str = "", per_param: bool = False, unicode: bool = True,
               width: int | None = None, hints: Sequence[str] = ()) -> str:
    """The groups (or each parameter) as a table with an lr bar (and an ``optimizer`` column where the
    file has several), then every problem and the ``hints`` on them (:func:`lrrules.lint.conflict_hints`),
    fitted to ``width`` (:func:`lrrules.tables.fit`)."""
    lines = [printable(title)] if title else []
    base = f"base lr {fmt_num(plan.base_lr)}, base weight decay {fmt_num(plan.base_weight_decay)}"
    lines.append(base + "".join(f", {k} {fmt_value(v)}" for k, v in plan.base_options.items()))
    top = max((g.lr for g in plan.groups), default=0.0)
    bottom = log_bottom([g.lr for g in plan.groups])
    routes = any(g.optimizer != "default" for g in plan.groups)
    route = {g.index: g.optimizer for g in plan.groups}

    def bar(lrs: Sequence[float | None]) -> Column:
        return Column("(log)" if bottom else "", [lr_bar(lr, top, unicode, bottom) for lr in lrs], "bar",
                       redraw=lambda chars: [lr_bar(lr, top, unicode, bottom, chars) for lr in lrs])

    if per_param:
        params = plan.params
        columns = [
            Column("name", [a.name + (f" (= {', '.join(a.aliases)})" if a.aliases else "") for a in params], "text"),
            Column("shape", ["x".join(map(str, a.shape)) or "scalar" for a in params], drop=1),
            Column("layer", [fmt_value(a.layer) for a in params], drop=2),
            Column("group", [fmt_value(a.group) for a in params]),
            Column("rule", [claimed_by(a) for a in params], "text"),
            Column("modifiers", [", ".join(a.modifiers) or "-" for a in params], "text", short="mods", drop=-1),
            Column("lr", [fmt_num(a.lr) if a.lr is not None else a.status for a in params]),
            bar([a.lr for a in params]),
            Column("weight_decay", [fmt_num(a.weight_decay) if a.weight_decay is not None else "-" for a in params],
                    short="wd"),
            Column("options", [_options(plan, a.options) for a in params], "text", drop=-1),
        ]
        if plan.phase_frozen:  # frozen by a phase at plan.when: the same fact as JSON's and CSV's `trains`
            columns.insert(6, Column("trains", ["yes" if a.trains else "no (phase)" for a in params]))
        if routes:
            columns.insert(columns.index(next(c for c in columns if c.header == "lr")),
                           Column("optimizer", [route.get(a.group, "-") if a.group is not None else "-"
                                                 for a in params], "text", short="optim"))
    else:
        groups = plan.groups
        columns = [
            Column("group", [str(g.index) for g in groups]),
            Column("lr", [fmt_num(g.lr) for g in groups]),
            bar([g.lr for g in groups]),
            Column("lr_scale", [fmt_num(g.lr_scale) for g in groups], short="scale", drop=1),
            Column("weight_decay", [fmt_num(g.weight_decay) for g in groups], short="wd"),
            Column("options", [_options(plan, g.options) for g in groups], "text", drop=-1),
            Column("tensors", [str(len(g.params)) for g in groups], short="n"),
            Column("elements", [f"{g.numel:,}" for g in groups], drop=2),
            Column("rules", [", ".join(g.rules) for g in groups], "text"),
        ]
        if routes:
            columns.insert(1, Column("optimizer", [g.optimizer for g in groups], "text", short="optim"))
    lines += fit(columns, width, unicode)
    lines += _wrapped(summary(plan), width)
    lines += [printable(hint, lines=True) for hint in hints]  # its YAML as written: never wrapped
    return "\n".join(lines)


def summary(plan: Plan) -> list[str]:
    """The totals, then frozen parameters, problems and warnings, a line each (names indented)."""
    lines = [f"{len(plan.groups)} groups, {sum(len(g.params) for g in plan.groups)} trainable tensors, "
             f"{sum(g.numel for g in plan.groups):,} trainable elements"]
    if plan.phase_frozen:  # the grouped tensors count above; say how many of them train now
        grouped = sum(len(g.params) for g in plan.groups)
        lines[0] += f" ({grouped - len(plan.phase_frozen)} of the tensors training at {plan.when})"
    if plan.frozen:
        numel = sum(a.numel for a in plan.params if a.status == "frozen")
        lines.append(f"frozen: {len(plan.frozen)} tensors, {numel:,} elements")
        reasons: dict[str, list[str]] = {}
        for f in plan.frozen:
            reasons.setdefault(f.reason, []).append(f.param)
        lines += [f"  {reason}: {_names(names)}" for reason, names in reasons.items()]
    if plan.phase_frozen:
        lines.append(f"frozen by phases at {plan.when}: {len(plan.phase_frozen)} tensors (they keep their groups)")
        frozen_now = set(plan.phase_frozen)
        lines.append(f"  {_names([a.name for a in plan.params if a.name in frozen_now])}")  # the model's order
    lines += problems(plan) + [why for why in [nothing_trains(plan)] if why]
    lines += [f"warning: {w}" for w in plan.warnings()]
    return [printable(line) for line in lines]  # names come from the model and the file: no escapes


def problems(plan: Plan) -> list[str]:
    """Unmatched and conflicting parameters, as the table and ``check`` print them."""
    lines = []
    if plan.unmatched:
        label = "error" if plan.unmatched_mode == "error" else "given the defaults"
        lines.append(f"unmatched ({label}): {len(plan.unmatched)} tensors claimed by no rule")
        lines += [f"  {n}" for n in _cut(plan.unmatched)]
    if plan.conflicts:
        lines.append(f"conflicts (error): {len(plan.conflicts)}")
        lines += [f"  {m}" for m in _cut([c.message for c in plan.conflicts])]
    return [printable(line) for line in lines]


# --- check findings ----------------------------------------------------------------------------


def findings_text(findings: Sequence[Finding]) -> tuple[str, str]:
    """The findings as ``check`` prints them: ``(stderr, stdout)``. What is found in a file, at its
    place, goes to stderr as a compiler's does; a model's problems to stdout under ``FILE on MODEL:``."""
    err = [f.text() for f in findings if f.level == "note"]  # what was not checked, first
    err += [f.text() for f in findings if f.level not in ("note", "problem") or f.level == "problem" and not f.model]
    out: list[str] = []
    shown: set[tuple[str, str]] = set()
    for f in findings:
        if f.level == "problem" and f.model:
            if (f.path, f.model) not in shown:
                shown.add((f.path, f.model))
                out.append(f"{printable(f.path)} on {printable(f.model)}:")
            out += [f"  {line}" for line in f.message.splitlines()]
    return "\n".join(err), "\n".join(out)


def findings_json(findings: Sequence[Finding]) -> str:
    """The findings (notes left out) as a JSON list of objects (file, line, col, severity, model, message)."""
    return to_json([f.to_dict() for f in findings if f.level != "note"])


def findings_github(findings: Sequence[Finding]) -> str:
    """The findings as GitHub Actions workflow commands, ``::error file=F,line=L,col=C::message``,
    which the Actions runner shows as annotations on the file (and the pull request's diff).

    >>> from lrrules.check import Finding
    >>> findings_github([Finding("r.yaml", 3, 5, "error", "unknown key 'lr_mul'")])
    "::error file=r.yaml,line=3,col=5,title=lrrules::unknown key 'lr_mul'"
    """
    lines = []
    for f in findings:
        if f.level == "note":
            continue
        props = [f"file={_gh_property(f.path)}"]
        if f.line:
            props += [f"line={f.line}", f"col={f.col or 1}"]
        title = f"lrrules on {f.model}" if f.model else "lrrules"
        props.append(f"title={_gh_property(title)}")
        command = "warning" if f.level == "warning" and not f.exit_code else "error"
        lines.append(f"::{command} {','.join(props)}::{_gh_data(f.message)}")
    return "\n".join(lines)


def _gh_data(text: str) -> str:
    # The escapes of the Actions toolkit (toolkit/packages/core/src/command.ts, escapeData), after
    # printable(): a terminal escape, bidi control or line separator in a name is shown as \x1b...,
    # in the log as in the annotation, and no CR or LF is left to end the command early.
    text = printable(text, lines=True)
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    # A property also ends at ',' and its value at '::'; its newlines are escaped like the rest.
    return _gh_data(printable(text)).replace(":", "%3A").replace(",", "%2C")


# --- parameters --------------------------------------------------------------------------------


def param_rows(params: Sequence[ParamInfo], layers: Sequence[int | None]) -> list[dict[str, Any]]:
    """One row per parameter for the ``params`` command."""
    return [
        {"name": p.name, "shape": list(p.shape), "numel": p.numel, "module": p.module,
         "requires_grad": p.requires_grad, "layer": layer, "aliases": list(p.aliases)}
        for p, layer in zip(params, layers)
    ]


def param_table(rows: Sequence[dict[str, Any]], num_layers: int, width: int | None = None) -> str:
    """The :func:`param_rows` as a table with a totals line, fitted to ``width``."""
    columns = [
        Column("name", [r["name"] + (f" (= {', '.join(r['aliases'])})" if r["aliases"] else "") for r in rows], "text"),
        Column("shape", ["x".join(map(str, r["shape"])) or "scalar" for r in rows]),
        Column("numel", [f"{r['numel']:,}" for r in rows]),
        Column("module", [r["module"] or "-" for r in rows], "text"),
        Column("trains", ["yes" if r["requires_grad"] else "no" for r in rows]),
        Column("layer", [fmt_value(r["layer"]) for r in rows]),
    ]
    total = sum(r["numel"] for r in rows)
    return "\n".join(fit(columns, width, True) + [f"{len(rows)} tensors, {total:,} elements, {num_layers} layers"])


def flattened(rules: RuleSet) -> dict[str, Any]:
    """``show``'s data: the file as lrrules reads it (extends merged, vars set), defaults left out
    but the optimizer's type (an empty mapping would hide it)."""
    data = rules.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    data = {"version": rules.version, **data}
    if rules.optimizer is not None:
        data["optimizer"] = {"type": rules.optimizer.type}
    return data


# --- small pieces ------------------------------------------------------------------------------


def claimed_by(a: Assignment) -> str:
    """The rule column: the rule, and the name it matched where that is not the first name."""
    if not a.rule:
        return "-" if a.status == "trainable" else a.status
    return a.rule + (f" (as {a.matched_as})" if a.matched_as and a.matched_as != a.name else "")


def _options(plan: Plan, options: Any) -> str:
    # Options equal to the defaults' hold in every group; only the differences are news.
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in options.items() if plan.base_options.get(k) != v) or "-"


def _cut(items: Sequence[Any]) -> list[Any]:
    shown = list(items[:SHOWN])
    if len(items) > SHOWN:
        shown.append(f"... and {len(items) - SHOWN} more (see --format json)")
    return shown


def _wrapped(lines: Sequence[str], width: int | None) -> list[str]:
    """Long lines (lists of names) wrapped at ``width``, continuation lines indented under them."""
    if not width:
        return list(lines)
    out = []
    for line in lines:
        indent = " " * (len(line) - len(line.lstrip(" ")) + 2)
        out += textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=False,
                             break_on_hyphens=False, drop_whitespace=True) or [line]
    return out


def _names(names: Sequence[str]) -> str:
    text = ", ".join(names[:SHOWN])
    return text + (f", ... and {len(names) - SHOWN} more" if len(names) > SHOWN else "")
