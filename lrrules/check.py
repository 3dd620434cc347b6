"""What ``lrrules check`` and ``lrrules diff`` find, as data a library user gets the same as the
command line prints it: :func:`check` returns :class:`Finding` records, :func:`changes` the
:class:`~lrrules.plan.Change` list. Torch-free until a model needs it (a file alone, or against a
checkpoint with an optimizer the table of :mod:`lrrules.signatures` knows, never imports torch).
"""

from __future__ import annotations

import functools
import os
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import OptimizerError, ResolveError, RuleError, RuleFileError, UsageError, caret, dotted, printable

if TYPE_CHECKING:
    import torch

    from .language import RuleSet
    from .plan import Change, Plan
    from .sources import Model
    from .variables import BaseShapes

Level = Literal["error", "problem", "warning", "note"]


@dataclass(frozen=True)
class Finding:
    """One thing ``check`` found: in a rule file (``line``/``col`` 1-based, 0 for the whole file) or
    in its plan on ``model``. ``level``: ``error`` (an invalid file, exit 2), ``problem`` (exit 1),
    ``warning`` (likely a mistake: exit 0, or 1 when ``strict``) or ``note`` (what was not checked).

    >>> Finding("r.yaml", 5, 7, "error", "unknown key 'lr_mul'").text()
    "r.yaml:5:7: unknown key 'lr_mul'"
    """

    path: str
    line: int
    col: int
    level: Level
    message: str
    model: str = ""
    strict: bool = False
    #: Tensors claimed by each rule and modifier on each model (a check of several models).
    claims: Mapping[str, Mapping[str, int]] | None = field(default=None, compare=False, hash=False)

    @property
    def exit_code(self) -> int:
        """2 for an error, 1 for a problem (or a warning under ``strict``), 0 otherwise."""
        return 2 if self.level == "error" else int(self.level == "problem" or self.level == "warning" and self.strict)

    def text(self) -> str:
        """The finding on one line (the message may hold several): ``path:line:col: message``."""
        if self.level == "note":
            return f"lrrules: note: {printable(self.message, lines=True)}"
        # A newline in a file's or model's name must not start a line that reads as another finding.
        where = f"{printable(self.path)}:{self.line}:{self.col}" if self.line else printable(self.path)
        on = f" (on {printable(self.model)})" if self.model else ""
        kind = "warning: " if self.level == "warning" else ""
        return f"{where}: {kind}{printable(self.message, lines=True)}{on}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: ``file``, ``line``, ``col`` (``None`` for the whole file), ``severity``, ..."""
        out = {"file": self.path, "line": self.line or None, "col": self.col or None,
               "severity": self.level, "model": self.model or None, "message": self.message}
        return out | ({"claims": {e: dict(row) for e, row in self.claims.items()}} if self.claims else {})


def check(rules: str | Path | RuleSet, models: Sequence[Model | str | torch.nn.Module] = (), *,
          strict: bool = False, overrides: Mapping[str, float] | None = None,
          base_model: Model | str | None = None, open_model: Callable[[str], Model] | None = None,
          cache: bool = True) -> list[Finding]:
    """Everything ``lrrules check`` reports for one rule file (a spec or a loaded RuleSet): its errors
    at their places; alone, what the file decides (:mod:`lrrules.lint`); with ``models`` (Models,
    modules, or specs ``open_model`` opens), the optimizer, each plan's problems and the rules that
    claim nothing on every model. ``strict`` also fails on unused rules and lr = 0; ``base_model``:
    muP's base widths. A model that cannot be built raises, as the command line stops on it.

    >>> import lrrules
    >>> rules = lrrules.loads("version: 1\\ndefaults: {lr: 0.1}\\nrules:\\n  - {name: all, match: '*', freeze: true}\\n")
    >>> [(f.level, f.line, f.col) for f in lrrules.check(rules)]
    [('problem', 4, 37)]
    """
    from .language import RuleSet
    from .loader import load

    if overrides and isinstance(rules, RuleSet):  # its vars are read already: never dropped silently
        raise UsageError("check: overrides apply to a rule file that is loaded here, not to a RuleSet")
    name = rules.path if isinstance(rules, RuleSet) else os.fspath(rules)
    try:
        ruleset = rules if isinstance(rules, RuleSet) else load(rules, overrides)
    except RuleFileError as exc:
        return [_located(e) for e in exc.errors]
    except UsageError as exc:  # a file that cannot be read: a missing path, a directory
        return [Finding(name, 0, 0, "error", str(exc))]
    try:
        if not models:
            return _alone(ruleset, strict)
        found = [Finding(name, 0, 0, "note", note) for note in _optimizer(ruleset, cache)]
    except OptimizerError as exc:
        return [_optimizer_finding(exc, name)]
    opened = open_model or _opener(cache)
    base: BaseShapes | None = None
    plans: dict[str, Plan] = {}
    for i, item in enumerate(models):
        model = _as_model(item, opened)
        if i == 0 and base_model is not None:  # muP's base shapes: made once, when a plan first needs them
            from .variables import base_shapes

            base = base_shapes(_as_model(base_model, opened).params)
        more, plan = _on_model(ruleset, name, model, base, strict, cache)
        found += more
        if plan is not None:
            plans[model.label] = plan
    return found + _unused(ruleset, plans, strict)


def _alone(ruleset: RuleSet, strict: bool) -> list[Finding]:
    """What the file decides for every model: an unknown optimizer type (from the torch-free table;
    raises), then what :func:`lrrules.lint.lint` finds, each at its place."""
    from .lint import lint
    from .signatures import check_names

    check_names(ruleset)
    places = [(ruleset.locate(item.loc), item) for item in lint(ruleset)]
    return [Finding(at.path, at.line, at.col, item.severity, item.message, strict=strict) for at, item in places]


def _optimizer(ruleset: RuleSet, cache: bool) -> list[str]:
    """The notes on the optimizer; raises :class:`OptimizerError`. One optimizer the table knows is
    checked from the table, without torch; several, or one it does not know: torch decides."""
    from .signatures import check as check_signature
    from .signatures import check_names
    from .sources import check_optimizer_cached

    check_names(ruleset)  # every type at its place, `optimizers:` too, before torch is asked
    notes = None if ruleset.optimizers else check_signature(ruleset)
    if notes is None:
        check_optimizer_cached(ruleset, use_cache=cache)
    return notes or []


def _opener(cache: bool) -> Callable[[str], Model]:
    from .sources import cached_open_model

    return functools.cache(lambda spec: cached_open_model(spec, use_cache=cache))  # each model built once


def _as_model(item: Model | str | torch.nn.Module, opened: Callable[[str], Model]) -> Model:
    from .sources import Model

    if isinstance(item, (Model, str)):
        return item if isinstance(item, Model) else opened(item)
    from .params import collect

    params, tensors = collect(item, type(item).__name__)
    return Model(type(item).__name__, params, item, tensors)


def resolve_model(rules: RuleSet, model: Model, base: BaseShapes | None = None) -> Plan:
    """The plan of ``rules`` on a :class:`~lrrules.sources.Model` (a built module or a checkpoint's
    parameters); ``base``: muP's base shapes (:func:`lrrules.variables.base_shapes`)."""
    from .resolver import resolve_params

    return resolve_params(rules, model.params, model.tensors, model.module, model.ordered, base)


def _on_model(ruleset: RuleSet, name: str, model: Model, base: BaseShapes | None, strict: bool,
              cache: bool) -> tuple[list[Finding], Plan | None]:
    """The plan's problems on one model, as one finding (an error of the file at its place), and the plan."""
    from .plan import nothing_trains

    try:
        plan = resolve_model(ruleset, model, base)
        if ruleset.optimizers and not plan.conflicts:  # several optimizers: each group judged as build judges it
            from .sources import check_optimizer_cached

            check_optimizer_cached(ruleset, cache, plan)
    except RuleFileError as exc:
        return [_located(e, model.label) for e in exc.errors], None
    except ResolveError as exc:
        return [Finding(name, 0, 0, "error", str(exc), model.label)], None
    except OptimizerError as exc:
        return [_optimizer_finding(exc, name)], None
    unused = {f"rule '{r}' matches no parameter" for r in plan.unused_rules}  # judged across models
    lines = [why for why in [nothing_trains(plan)] if why]
    if plan.unmatched or plan.conflicts:  # as the report prints them; a clean plan imports neither module
        from .lint import conflict_hints
        from .report import problems

        lines = problems(plan) + conflict_hints(ruleset, plan.conflicts) + lines
        # why so much is unclaimed: every name wrapped in one prefix (Lightning's `model.`, peft's)
        lines += [f"hint: {c}" for c in plan.cautions if c.startswith(("every name ", "every parameter name "))]
    lines += [f"strict: {w}" for w in plan.warnings() if w not in unused] if strict else []
    found = [Finding(name, 0, 0, "problem", "\n".join(lines), model.label)] if lines else []
    odd = [n for n in (p.name for p in model.params) if not n.isascii() and unicodedata.normalize("NFC", n) != n]
    if odd and plan.unused_rules:
        nfc = unicodedata.normalize("NFC", odd[0])
        found.append(Finding(name, 0, 0, "warning", f"{len(odd)} parameter names are not in Unicode NFC, such as "
                             f"{printable(repr(odd[0]))} (NFC: {printable(repr(nfc))}); "
                             f"rule '{plan.unused_rules[0]}' matches no parameter, and names are matched as written, "
                             "code point by code point: a glob typed in NFC does not match a name in NFD (copy the "
                             "name from `lrrules params`)", model.label, strict))
    return found, plan


def _unused(ruleset: RuleSet, plans: Mapping[str, Plan], strict: bool) -> list[Finding]:
    """A warning at each rule or modifier that claims nothing on every model (failing under
    ``strict``); with several models, one that never fails with the table of entries x models
    (tensors claimed) when an entry claims nothing on some: a CNN head claims nothing on a ViT."""
    entries = [(kind, i, e.name) for kind in ("rules", "modifiers") for i, e in enumerate(getattr(ruleset, kind))]
    claims = {label: Counter(n for a in plan.params for n in (a.rule, *a.modifiers) if n)
              for label, plan in plans.items()}
    table = {entry: {label: counts[entry] for label, counts in claims.items()} for _, _, entry in entries}
    found = []
    for kind, i, entry in entries:
        if plans and not any(table[entry].values()):
            at, on = ruleset.locate((kind, i)), f" on any of {len(plans)} models" if len(plans) > 1 else ""
            found.append(Finding(at.path, at.line, at.col, "warning", f"rule '{entry}' matches no parameter{on}",
                                 next(iter(plans)) if len(plans) == 1 else "", strict))
    if len(plans) > 1 and any(0 in row.values() for row in table.values()):
        width = max(len(e) for e in table)
        lines = [f"  {'rule':<{width}}  " + "  ".join(plans)]
        lines += [f"  {e:<{width}}  " + "  ".join(f"{n:>{len(m)}}" for m, n in row.items()) for e, row in table.items()]
        found.append(Finding(ruleset.path, 0, 0, "warning", "tensors claimed per model (a rule unused on one model "
                             "but used on another is fine):\n" + "\n".join(lines), claims=table))
    return found


def _located(error: RuleError, model: str = "") -> Finding:
    """A :class:`RuleError` as a finding at its place, its message escaped as ``RuleError`` prints it
    (a key may hold a newline; only the caret's own lines may break the message)."""
    field = printable(dotted(error.loc))
    message = (f"{field}: " if field else "") + printable(error.message) + caret(error.expr, error.offset)
    return Finding(error.path, error.line, error.col, "error", message, model)


def _optimizer_finding(exc: OptimizerError, name: str) -> Finding:
    """An :class:`OptimizerError` on its line where it has one (an option, the type), else on the file."""
    return Finding(exc.path or name, exc.line, exc.col, "error", exc.message if exc.path else str(exc))


def parse_overrides(sets: Sequence[str]) -> dict[str, float]:
    """The ``--set NAME=VALUE`` pairs, each value read as the rule file reads a plain scalar (YAML 1.2's
    core schema): ``010`` is 10 and ``0x1f`` 31 as in the file, ``yes`` and ``true`` are not numbers.

    >>> parse_overrides(["decay=0.8", "layers=010"])
    {'decay': 0.8, 'layers': 10}
    """
    from .reader import plain_number

    out: dict[str, float] = {}
    for pair in sets:
        name, sep, raw = pair.partition("=")
        try:
            value = plain_number(raw.strip()) if sep else None
        except ValueError as exc:
            raise UsageError(f"--set {printable(name)}: {exc}") from None
        if not sep or not name.isidentifier() or value is None:
            raise UsageError(f"--set takes name=number (a number as the rule file writes one: 0.5, 1e-3, 010), "
                             f"got {pair[:60]!r}" + ("..." if len(pair) > 60 else ""))
        out[name] = value
    return out


# --- diff ------------------------------------------------------------------------------------------


def optimizer_types(rules: RuleSet) -> dict[str, str]:
    """The type of each optimizer a parameter may be routed to, by name (``default``: the single one)."""
    from .routes import optimizer_type
    from .vocabulary import DEFAULT_OPTIMIZER

    return {name: optimizer_type(rules, name) for name in [DEFAULT_OPTIMIZER, *rules.optimizers]}


def changes(old_rules: RuleSet, new_rules: RuleSet, old_plan: Plan, new_plan: Plan) -> list[Change]:
    """What ``lrrules diff`` lists: the optimizers' own changes first (a new type or default changes
    every group, not one parameter), then each parameter's (:func:`lrrules.plan.diff_plans`)."""
    from .plan import Change, diff_plans
    from .vocabulary import DEFAULT_OPTIMIZER

    old_types, new_types = optimizer_types(old_rules), optimizer_types(new_rules)
    whole = [Change("(optimizer)", "type", old_types[DEFAULT_OPTIMIZER], new_types[DEFAULT_OPTIMIZER]),
             Change("(defaults)", "lr", old_plan.base_lr, new_plan.base_lr),
             Change("(defaults)", "weight_decay", old_plan.base_weight_decay, new_plan.base_weight_decay)]
    for key in dict.fromkeys([*old_plan.base_options, *new_plan.base_options]):
        whole.append(Change("(defaults)", key, old_plan.base_options.get(key), new_plan.base_options.get(key)))
    for name in dict.fromkeys([*old_types, *new_types]):  # a named optimizer added, dropped or retyped
        if name != DEFAULT_OPTIMIZER:
            whole.append(Change(f"(optimizers.{name})", "type", old_types.get(name), new_types.get(name)))
    return [c for c in whole if c.old != c.new] + diff_plans(old_plan, new_plan)
