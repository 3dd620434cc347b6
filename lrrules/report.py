"""Reports for people (tables, explanations) and for programs (JSON, YAML, CSV, GitHub annotations):
every output format, each a function from data the library made (a Plan, ParamInfo records,
Changes, check Findings) to text."""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import yaml

from .errors import printable
from .params import ParamInfo
from .plan import Assignment, Change, Plan, nothing_trains
from .roles import describe

if TYPE_CHECKING:
    from .check import Finding
    from .language import RuleSet

SHOWN = 20  # names a problem list shows before it says how many more there are
BAR_WIDTH, MIN_BAR_WIDTH = 12, 4  # the lr bar's characters, and the fewest it is redrawn to in a terminal
LOG_SPAN = 100.0  # bars go on a log scale when the largest lr is this many times the smallest
_EIGHTHS = " ▏▎▍▌▋▊▉"


# --- structured formats ------------------------------------------------------------------------


def to_json(data: Any) -> str:
    """``data`` as indented JSON."""
    return json.dumps(data, indent=2)


def to_yaml(data: Any) -> str:
    """``data`` as block YAML, keys in their order, short lists in flow style.

    >>> print(to_yaml({"lr": 0.1, "betas": [0.9, 0.99]}), end="")
    lr: 0.1
    betas: [0.9, 0.99]
    """
    text: str = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    return text


#: A text cell starting with one of these is a formula to a spreadsheet (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as CSV with a header, lists and mappings as JSON in their cell. Text a spreadsheet would
    run as a formula (starting with ``=+-@``, a tab or CR) gets a leading ``'``, as OWASP advises
    (numbers stay numbers); a row with a CR in a cell is quoted whole (the writer quotes only for ``\\n``).

    >>> to_csv([{"name": "=cmd", "lr": -0.5}])
    "name,lr\\n'=cmd,-0.5\\n"
    """
    if not rows:
        return ""
    out = io.StringIO()
    fields = list(rows[0])
    minimal = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    quoted = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", quoting=csv.QUOTE_ALL)
    minimal.writeheader()
    for row in rows:
        cells = {k: _csv_cell(v) for k, v in row.items()}
        writer = quoted if any(isinstance(v, str) and "\r" in v for v in cells.values()) else minimal
        writer.writerow(cells)
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        value = json.dumps(value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def render(fmt: str, data: Callable[[], Any], rows: Callable[[], Sequence[dict[str, Any]]],
           table: Callable[[], str]) -> str:
    """``data()`` as JSON or YAML, ``rows()`` as CSV, or ``table()``, by ``fmt``: only the one asked
    for is built, which matters for a model of many thousand tensors.

    >>> render("csv", dict, lambda: [{"lr": 0.1}], str)
    'lr\\n0.1'
    """
    if fmt == "json":
        return to_json(data())
    if fmt == "yaml":
        return to_yaml(data()).rstrip("\n")
    if fmt == "csv":
        return to_csv(rows()).rstrip("\n")
    return table()


# --- plans -------------------------------------------------------------------------------------


def plan_rows(plan: Plan, per_param: bool) -> list[dict[str, Any]]:
    """One row per group, or per parameter, for CSV. Each row names the optimizer its group goes
    to (``default``: the single ``optimizer:``), as the JSON's groups do."""
    if per_param:
        keys = ("name", "shape", "module", "layer", "status", "trains", "group", "rule", "modifiers", "lr",
                "lr_scale", "weight_decay", "options")
        route = {g.index: g.optimizer for g in plan.groups}
        return [{**{k: d[k] for k in keys}, "optimizer": route.get(d["group"])}
                for d in (a.to_dict() for a in plan.params)]
    return [{**g.to_dict(), "params": len(g.params)} for g in plan.groups]


@dataclass
class _Column:
    """A table column and how it may give way in a narrow terminal: a ``text`` column is shortened
    (its cut cells ending in an ellipsis), a ``number`` column never is, the ``bar`` is redrawn
    narrower; ``short`` is its header's short name; ``drop`` its rank among the columns left out
    when nothing else fits (0: never; -1: only when it says nothing, ``-`` in every row)."""

    header: str
    cells: list[str]
    kind: Literal["text", "number", "bar"] = "number"
    short: str = ""
    drop: int = 0
    redraw: Callable[[int], list[str]] | None = None

    @property
    def width(self) -> int:
        """The terminal columns its widest cell (or header) takes."""
        return max([_cells(self.header), *map(_cells, self.cells)])

    @property
    def floor(self) -> int:
        """How narrow shortening its cells can make it."""
        return min(self.width, max(10, _cells(self.header))) if self.kind == "text" else self.width


def _fit(columns: list[_Column], width: int | None, unicode: bool) -> list[str]:
    """The columns as aligned lines within ``width``, giving way in the order docs/cli.md ("In a
    terminal") gives: short headers, columns of ``-`` only, a narrower bar, ``drop`` 1 columns, shorter
    text, then higher ``drop`` ranks; room left goes back to the bar. A number is never cut."""

    def over(cols: list[_Column], floors: bool = False) -> int:
        used = sum(c.floor if floors else c.width for c in cols)
        return used + 2 * (len(cols) - 1) - (width or 0)

    if width:
        if over(columns) > 0:
            for c in columns:
                c.header = c.short or c.header
        if over(columns) > 0:
            columns = [c for c in columns if not (c.drop < 0 and all(x == "-" for x in c.cells))]
        bar = next((c for c in columns if c.kind == "bar"), None)
        redraw = bar.redraw if bar is not None else None
        if bar and redraw and over(columns) > 0:
            bar.cells = redraw(MIN_BAR_WIDTH)
        for rank in sorted({c.drop for c in columns if c.drop > 0}):
            if over(columns, floors=rank > 1) <= 0:
                break
            columns = [c for c in columns if c.drop != rank]
        if bar and redraw and over(columns) < 0 and len(bar.cells) and max(map(len, bar.cells)) < BAR_WIDTH:
            # The room the later steps left goes back to the bar.
            bar.cells = redraw(min(BAR_WIDTH, max(map(len, bar.cells)) - over(columns)))
    rows = [[c.header for c in columns], *([c.cells[i] for c in columns] for i in range(len(columns[0].cells)))]
    return _align(rows, width, unicode, fixed={i for i, c in enumerate(columns) if c.kind != "text"})


def plan_table(plan: Plan, title: str = "", per_param: bool = False, unicode: bool = True,
               width: int | None = None, hints: Sequence[str] = ()) -> str:
    """The groups (or each parameter) as a table with an lr bar (and an ``optimizer`` column where the
    file has several), then every problem and the ``hints`` on them (:func:`lrrules.lint.conflict_hints`),
    fitted to ``width`` as :func:`_fit` says."""
    lines = [printable(title)] if title else []
    base = f"base lr {_num(plan.base_lr)}, base weight decay {_num(plan.base_weight_decay)}"
    lines.append(base + "".join(f", {k} {_value(v)}" for k, v in plan.base_options.items()))
    top = max((g.lr for g in plan.groups), default=0.0)
    bottom = _log_bottom([g.lr for g in plan.groups])
    routes = any(g.optimizer != "default" for g in plan.groups)
    route = {g.index: g.optimizer for g in plan.groups}

    def bar(lrs: Sequence[float | None]) -> _Column:
        return _Column("(log)" if bottom else "", [_bar(lr, top, unicode, bottom) for lr in lrs], "bar",
                       redraw=lambda chars: [_bar(lr, top, unicode, bottom, chars) for lr in lrs])

    if per_param:
        params = plan.params
        columns = [
            _Column("name", [a.name + (f" (= {', '.join(a.aliases)})" if a.aliases else "") for a in params], "text"),
            _Column("shape", ["x".join(map(str, a.shape)) or "scalar" for a in params], drop=1),
            _Column("layer", [_opt(a.layer) for a in params], drop=2),
            _Column("group", [_opt(a.group) for a in params]),
            _Column("rule", [_claimed(a) for a in params], "text"),
            _Column("modifiers", [", ".join(a.modifiers) or "-" for a in params], "text", short="mods", drop=-1),
            _Column("lr", [_num(a.lr) if a.lr is not None else a.status for a in params]),
            bar([a.lr for a in params]),
            _Column("weight_decay", [_num(a.weight_decay) if a.weight_decay is not None else "-" for a in params],
                    short="wd"),
            _Column("options", [_options(plan, a.options) for a in params], "text", drop=-1),
        ]
        if plan.phase_frozen:  # frozen by a phase at plan.when: the same fact as JSON's and CSV's `trains`
            columns.insert(6, _Column("trains", ["yes" if a.trains else "no (phase)" for a in params]))
        if routes:
            columns.insert(columns.index(next(c for c in columns if c.header == "lr")),
                           _Column("optimizer", [route.get(a.group, "-") if a.group is not None else "-"
                                                 for a in params], "text", short="optim"))
    else:
        groups = plan.groups
        columns = [
            _Column("group", [str(g.index) for g in groups]),
            _Column("lr", [_num(g.lr) for g in groups]),
            bar([g.lr for g in groups]),
            _Column("lr_scale", [_num(g.lr_scale) for g in groups], short="scale", drop=1),
            _Column("weight_decay", [_num(g.weight_decay) for g in groups], short="wd"),
            _Column("options", [_options(plan, g.options) for g in groups], "text", drop=-1),
            _Column("tensors", [str(len(g.params)) for g in groups], short="n"),
            _Column("elements", [f"{g.numel:,}" for g in groups], drop=2),
            _Column("rules", [", ".join(g.rules) for g in groups], "text"),
        ]
        if routes:
            columns.insert(1, _Column("optimizer", [g.optimizer for g in groups], "text", short="optim"))
    lines += _fit(columns, width, unicode)
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
    """The findings as ``check`` prints them by default: ``(stderr, stdout)``. What is found in a
    file, at its place, goes to stderr as a compiler's does; a model's problems to stdout, under a
    ``FILE on MODEL:`` heading each."""
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
    """The :func:`param_rows` as an aligned table with a totals line (names and classes shorten within
    ``width``; numbers never)."""
    header = ["name", "shape", "numel", "module", "trains", "layer"]
    body = [
        [r["name"] + (f" (= {', '.join(r['aliases'])})" if r["aliases"] else ""),
         "x".join(map(str, r["shape"])) or "scalar", f"{r['numel']:,}", r["module"] or "-",
         "yes" if r["requires_grad"] else "no", _opt(r["layer"])]
        for r in rows
    ]
    total = sum(r["numel"] for r in rows)
    lines = _align([header, *body], width, fixed={1, 2, 4, 5})
    return "\n".join(lines + [f"{len(rows)} tensors, {total:,} elements, {num_layers} layers"])


# --- explain -----------------------------------------------------------------------------------


def explained(plan: Plan, pattern: str) -> list[Assignment]:
    """The parameters whose name (or one of their names) matches the glob ``pattern``."""
    compiled = re.compile(fnmatch.translate(pattern))
    return [a for a in plan.params if any(compiled.match(n) for n in (a.name, *a.aliases))]


def explain_rows(plan: Plan, chosen: Sequence[Assignment], types: Mapping[str, str]) -> list[dict[str, Any]]:
    """``explain``'s JSON: each chosen parameter with the optimizer it goes to, that optimizer's type
    (``types``: :func:`lrrules.check.optimizer_types`) and its roles with their evidence (``None`` on a
    checkpoint, where roles are mostly undecided)."""
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
            lines.append(f"  rule: {_claimed(a)}" if a.rule else f"  rule: none ({a.note})")
            if a.modifiers:
                lines.append(f"  modifiers: {', '.join(a.modifiers)}")
            if a.captures:
                lines.append("  captured: " + ", ".join(f"{k}={v!r}" for k, v in a.captures.items()))
            for step in a.steps:
                if step.formula is None:
                    lines.append(f"  {step.entry}: {step.setting} = {_value(step.value)}")
                else:
                    filled = ", ".join(f"{k}={v!r}" for k, v in step.variables.items())
                    where = f" with {filled}" if filled else ""
                    lines.append(f"  {step.entry}: {step.setting} = {step.formula}{where} -> {_num(step.value)}")
            for phase in plan.phases:
                if a.name in phase.freeze:
                    lines.append(f"  phase {phase.index} (from {phase.when}) freezes it")
                if a.name in phase.unfreeze:
                    lines.append(f"  phase {phase.index} (from {phase.when}) unfreezes it")
            if not a.trains:
                lines.append(f"  frozen by the phases at {plan.when} (it keeps its group)")
            if a.group is not None:
                route = plan.groups[a.group].optimizer
                kind = (optimizers or {}).get(route)
                lines.append(f"  optimizer: {route}" + (f" ({kind})" if kind else ""))
            final = (f"  => lr {_num(a.lr or 0.0)} (x{_num(a.lr_scale or 0.0)} base), "
                     f"weight_decay {_num(a.weight_decay or 0.0)}")
            if a.options:
                final += ", " + ", ".join(f"{k} {_value(v)}" for k, v in a.options.items())
            lines.append(final + f", group {a.group}")
        blocks.append("\n".join(printable(line) for line in lines))
    return "\n\n".join(blocks)


def flattened(rules: RuleSet) -> dict[str, Any]:
    """``show``'s data: the file as lrrules reads it (extends merged, vars set), defaults left out,
    the optimizer's type kept (a default, but an empty mapping would hide it)."""
    data = rules.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    data = {"version": rules.version, **data}
    if rules.optimizer is not None:
        data["optimizer"] = {"type": rules.optimizer.type}
    return data


# --- diff --------------------------------------------------------------------------------------


def diff_table(changes: Sequence[Change], old: str, new: str,
               summary_rows: Sequence[dict[str, Any]] | None = None, width: int | None = None,
               unicode: bool = True) -> str:
    """The changes a row per parameter and setting, or per rule and setting given ``summary_rows``
    (:func:`diff_summary`). Within ``width`` the files' columns are headed ``old`` and ``new`` (named
    above), values are never cut, the examples column is the one left out; a cut text ends in ``…``."""
    if not changes:
        return printable(f"no parameter's settings differ between {old} and {new}")
    count = len({c.param for c in changes if not c.param.startswith("(")})
    if summary_rows is not None:
        columns = [
            _Column("rule", [r["rule"] for r in summary_rows], "text"),
            _Column("setting", [r["setting"] for r in summary_rows]),
            _Column(old, [_values(r["old"]) for r in summary_rows], short="old"),
            _Column(new, [_values(r["new"]) for r in summary_rows], short="new"),
            _Column("tensors", [str(r["count"] or "-") for r in summary_rows], short="n"),
            _Column("for example", [_first(r["params"]) for r in summary_rows], "text", drop=2),
        ]
    else:
        columns = [
            _Column("param", [c.param for c in changes], "text"),
            _Column("setting", [c.setting for c in changes]),
            _Column(old, [_value(c.old) for c in changes], short="old"),
            _Column(new, [_value(c.new) for c in changes], short="new"),
        ]
    lines = _fit(columns, width, unicode)
    if columns[2].header != old:  # shortened to fit: say which file is which
        lines = [printable(f"old: {old}"), printable(f"new: {new}"), *lines]
    return "\n".join(lines + [f"{count} parameters differ"])


def diff_summary(changes: Sequence[Change], old_plan: Plan, new_plan: Plan) -> list[dict[str, Any]]:
    """The changes grouped by the rule that claims the parameter (in the new plan, else the old) and
    by setting: one row each with the distinct old and new values, the count and the parameters (in
    the model's order). The optimizer's own changes are rows of their own, ``(optimizer)`` and
    ``(defaults)``, with no parameters."""
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
        return _value(values[0])
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) == len(values):
        return f"{_num(min(numbers))}..{_num(max(numbers))} ({len(values)} values)"
    return ", ".join(_value(v) for v in values)


def _first(names: Sequence[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (f", ... ({len(names) - shown} more)" if len(names) > shown else "")


# --- small pieces ------------------------------------------------------------------------------


def _claimed(a: Assignment) -> str:
    """The rule column: the rule, and the name it matched where that is not the first name."""
    if not a.rule:
        return "-" if a.status == "trainable" else a.status
    return a.rule + (f" (as {a.matched_as})" if a.matched_as and a.matched_as != a.name else "")


def _log_bottom(lrs: Sequence[float]) -> float | None:
    """The smallest positive lr when the lrs span orders of magnitude (a log scale), else ``None``."""
    positive = [lr for lr in lrs if lr > 0]
    if not positive or max(positive) < LOG_SPAN * min(positive):
        return None
    return min(positive)


def _bar(value: float | None, top: float, unicode: bool, bottom: float | None = None, chars: int = BAR_WIDTH) -> str:
    """A bar ``value / top`` of ``chars`` characters; on a log scale from ``bottom`` (one eighth, so
    the smallest lr still shows) to ``top`` (full) when ``bottom`` is given."""
    if value is None or top <= 0:
        return ""
    if bottom is not None and value > 0:
        span = math.log(top) - math.log(bottom)
        eighths = 1 + round((math.log(value) - math.log(bottom)) / span * (chars * 8 - 1))
    else:
        eighths = round(value / top * chars * 8)
    if not unicode:  # whole characters only: rounded, and at least one for any lr above zero
        return "#" * (max(1, round(eighths / 8)) if value > 0 else 0)
    return ("█" * (eighths // 8) + _EIGHTHS[eighths % 8]).rstrip() or "▏"


def _options(plan: Plan, options: Any) -> str:
    # Options equal to the defaults' hold in every group; only the differences are news.
    return ", ".join(f"{k}={_value(v)}" for k, v in options.items() if plan.base_options.get(k) != v) or "-"


def _cut(items: Sequence[Any]) -> list[Any]:
    shown = list(items[:SHOWN])
    if len(items) > SHOWN:
        shown.append(f"... and {len(items) - SHOWN} more (see --format json)")
    return shown


def _wrapped(lines: Sequence[str], width: int | None) -> list[str]:
    """Long lines (the lists of names) wrapped at ``width``, continuation lines indented under them."""
    if not width:
        return list(lines)
    import textwrap

    out = []
    for line in lines:
        indent = " " * (len(line) - len(line.lstrip(" ")) + 2)
        out += textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=False,
                             break_on_hyphens=False, drop_whitespace=True) or [line]
    return out


def _names(names: Sequence[str]) -> str:
    text = ", ".join(names[:SHOWN])
    return text + (f", ... and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)


def _num(value: float) -> str:
    return f"{value:.4g}"


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_value(v) for v in value) + ")"
    if isinstance(value, float):
        return _num(value)
    return str(value)


def _align(rows: Iterable[list[str]], width: int | None = None, unicode: bool = True,
           fixed: set[int] | None = None) -> list[str]:
    """Rows as left-aligned columns two spaces apart. Within ``width``, the widest column is
    shortened first (never below its header or 10 characters), its cut cells ending in an ellipsis;
    the ``fixed`` columns (numbers, the bar) are never cut: a cut number or bar would misstate it."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(_cells(r[i]) for r in rows) for i in range(len(rows[0]))]
    if width:
        if fixed is None:  # the lr bar (headed "" or "(log)") by default
            fixed = {i for i, header in enumerate(rows[0]) if header in ("", "(log)")}
        floors = [w if i in fixed else max(10, _cells(rows[0][i])) for i, w in enumerate(widths)]
        while (over := sum(widths) + 2 * (len(widths) - 1) - width) > 0:
            i = max(range(len(widths)), key=lambda k: widths[k] - floors[k])
            if widths[i] <= floors[i]:
                break  # as narrow as it goes: the terminal wraps the rest
            widths[i] = max(floors[i], widths[i] - over)
        mark = "…" if unicode else "~"
        rows = [[c if _cells(c) <= w else _clip(c, w - 1) + mark for c, w in zip(row, widths)] for row in rows]
    return ["  ".join(cell + " " * (w - _cells(cell)) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _cells(text: str) -> int:
    """The columns a terminal gives ``text``: two for a wide (East Asian) character, none for a
    combining mark, one for any other (``len`` counts ``日`` as one and ``e`` + accent as two)."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _clip(text: str, width: int) -> str:
    """The longest start of ``text`` within ``width`` columns (a wide character is never split)."""
    used = 0
    for i, char in enumerate(text):
        used += _cells(char)
        if used > width:
            return text[:i]
    return text
