"""From an optimizer a script already builds to the shortest rule file that gives the same groups.

The importers (``lrrules.importers``) share the per-tensor table and its comparison kept here:
both sides are read into ``{name: settings}`` and compared tensor by tensor.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from .errors import LrrulesError, UsageError
from .loader import loads
from .params import ParamInfo, collect
from .resolver import resolve
from .resume import RECORD_KEY

#: Group keys that say nothing about how a tensor trains: bookkeeping of torch, schedulers, MMEngine
#: (``lr_mult``/``decay_mult`` copied from ``custom_keys``) and lrrules itself (``name``, the resume tag).
BOOKKEEPING = frozenset({"params", "param_names", "name", "initial_lr", "lr_mult", "decay_mult", "lr_scale", RECORD_KEY})
Settings = dict[str, Any]  # "optimizer" (class name or None), "lr", "weight_decay", options
TOLERANCE = 1e-12


def tensor_table(source: Any, model: torch.nn.Module) -> dict[str, Settings | None]:
    """Every parameter of ``model`` by its lrrules name: the settings of its group, ``None`` where no
    group holds it (frozen). ``source``: an optimizer, several (a list, a ``CombinedOptimizer``), or
    a list of param-group dicts. A group's ``lr_scale`` (timm's) is folded into its ``lr``.

    >>> tensor_table(torch.optim.SGD(model.parameters(), lr=0.1), model)["fc.weight"]["lr"]  # doctest: +SKIP
    0.1
    """
    infos, tensors = collect(model)
    name_of = {id(t): info.name for info, t in zip(infos, tensors)}
    table: dict[str, Settings | None] = {info.name: None for info in infos}
    for optimizer, group in _groups(source):
        settings = {k: _plain(v) for k, v in group.items() if k not in BOOKKEEPING}
        settings["lr"] = float(group.get("lr", math.nan)) * float(group.get("lr_scale", 1.0))
        settings["optimizer"] = optimizer
        for tensor in group["params"]:
            name = name_of.get(id(tensor))
            if name is None:
                raise UsageError("a param group holds a tensor that is not a parameter of the model")
            if table[name] is not None:
                raise UsageError(f"'{name}' is in two param groups")
            table[name] = settings
    return table


def _groups(source: Any) -> Iterable[tuple[str | None, Mapping[str, Any]]]:
    inner = getattr(source, "optimizers", None)
    if isinstance(inner, Mapping):
        source = list(inner.values())
    if isinstance(source, torch.optim.Optimizer):
        source = [source]
    for item in source:
        if isinstance(item, torch.optim.Optimizer):
            yield from ((type(item).__name__, g) for g in item.param_groups)
        elif isinstance(item, Mapping):
            yield None, {**item, "params": list(item["params"])}
        else:
            raise UsageError(f"expected an optimizer or param-group dicts, got {type(item).__name__}")


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return list(map(_plain, value)) if isinstance(value, (list, tuple)) else value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=0.0) or a == b
    return bool(a == b)


def differences(expected: Mapping[str, Settings | None], got: Mapping[str, Settings | None]) -> list[str]:
    """One line per tensor whose settings differ (lr, weight decay, options, frozen, optimizer)."""
    out = []
    for name in expected:
        a, b = expected[name], got.get(name)
        if a is None or b is None:
            if (a is None) != (b is None):
                out.append(f"{name}: {'frozen' if a is None else 'trains'} in the original, "
                           f"{'frozen' if b is None else 'trains'} by the rule file")
            continue
        # Plain param-group dicts name no optimizer and leave unset keys to its constructor.
        keys = [k for k in dict.fromkeys([*a, *b])
                if not any(s.get("optimizer") is None and (k == "optimizer" or k not in s) for s in (a, b))]
        wrong = [f"{k} {a.get(k)!r} != {b.get(k)!r}" for k in keys if not _same(a.get(k), b.get(k))]
        if wrong:
            out.append(f"{name}: " + ", ".join(wrong))
    return out


def comparison(expected: Mapping[str, Settings | None], got: Mapping[str, Settings | None]) -> str:
    """The per-tensor table: name, lr and weight decay on each side, and whether they agree."""
    rows = [("tensor", "lr", "weight_decay", "by the rule file", "same")]
    bad = {line.split(": ", 1)[0] for line in differences(expected, got)}
    for name, a in expected.items():
        b = got.get(name)
        lr_a, wd_a = _shown(a)
        lr_b, wd_b = _shown(b)
        rows.append((name, lr_a, wd_a, f"{lr_b} / {wd_b}", "NO" if name in bad else "yes"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _shown(s: Settings | None) -> tuple[str, str]:
    return ("frozen", "-") if s is None else (f"{s['lr']:.6g}", f"{s.get('weight_decay') or 0:.6g}")


def rules_table(text: str, model: torch.nn.Module, like: Any, optimizers: Mapping[str, Any] | None = None
                ) -> dict[str, Settings | None]:
    """The table of what the rule file ``text`` gives ``model``: built into optimizers when ``like``
    (the other side) is an optimizer, so both carry their constructors' defaults; else plain groups."""
    from .optim import build

    ruleset = loads(text, path="<imported>")
    if _is_optimizers(like):
        return tensor_table(build(ruleset, model, optimizers=optimizers).optimizer, model)
    plan = resolve(ruleset, model)
    routes = list(dict.fromkeys(g.optimizer for g in plan.groups))
    groups = [g for r in routes for g in plan.param_groups(optimizer=r if len(routes) > 1 else None)]
    return tensor_table(groups, model)


def _is_optimizers(source: Any) -> bool:
    return isinstance(source, torch.optim.Optimizer) or (
        isinstance(source, (list, tuple)) and all(isinstance(o, torch.optim.Optimizer) for o in source))


# --- from_optimizer ------------------------------------------------------------------------------

_LAYERINGS: tuple[tuple[str, str], ...] = (
    ("{by: tensor}", "each parameter tensor is a layer"), ("{by: module, level: 1}", "each top-level module is a layer"),
    ("{by: blocks}", "each block of the model's block stack is a layer"), ("{by: timm}", "timm's own layer grouping"))
_ROLES = ("head", "embedding", "position", "norm", "bias", "no_weight_decay", "hidden")


def from_optimizer(optimizer: Any, model: torch.nn.Module) -> str:
    """The shortest rule file (YAML text) that gives ``model`` the groups of ``optimizer`` exactly:
    lr, weight decay, options, frozen (parameters in no group) and the optimizer of each tensor.
    Where the lrs follow ``base * d ** depth`` over a layering, the file says so in one formula; what
    does not follow it is written as literal rules. ``optimizer``: as :func:`tensor_table` takes.

    >>> text = lrrules.from_optimizer(torch.optim.AdamW(groups), model)   # doctest: +SKIP
    """
    table = tensor_table(optimizer, model)
    infos, _ = collect(model)
    classes = _classes(optimizer)
    return _Writer(table, infos, classes, model).text()


def _classes(source: Any) -> dict[str, type]:
    inner = getattr(source, "optimizers", None)
    items = list(inner.values()) if isinstance(inner, Mapping) else source if isinstance(source, (list, tuple)) else [source]
    return {type(o).__name__: type(o) for o in items if isinstance(o, torch.optim.Optimizer)}


def constructor_defaults(cls: type | None) -> dict[str, Any]:
    """What ``cls`` puts in a group the caller gave nothing but params (AdamW's
    ``decoupled_weight_decay`` is in no signature): options equal to these go unwritten."""
    if cls is None:
        return {}
    try:
        group = cls([torch.zeros(2, 2, requires_grad=True)]).param_groups[0]  # 2-D: Muon takes no other
    except Exception:  # a constructor that needs more than params: write every option
        return {}
    return {k: _plain(v) for k, v in group.items() if k not in BOOKKEEPING}


def num(value: Any) -> str:
    """A value as YAML that reads back as the same value (``1.0e-05``, not PyYAML's string ``1e-05``)."""
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            text = text.replace("e", ".0e")
        return text
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(num, value)) + "]"
    return json.dumps(value)


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def matcher(names: Sequence[str], infos: Sequence[ParamInfo], dont_care: frozenset[str] = frozenset()) -> str:
    """The shortest matcher (YAML flow text) that matches ``names`` and no other tensor of ``infos``
    (those in ``dont_care`` aside): a role, an ``ndim``, else globs over module prefixes and suffixes."""
    want = set(names)
    live = [i for i in infos if i.name not in dont_care]
    for role in _ROLES:
        if {i.name for i in live if any(r == role for r, _ in i.roles)} == want:
            return f"{{role: {role}}}"
    flat = {i.name for i in live if i.ndim <= 1}
    for dims in ([0, 1], [2]):
        if {i.name for i in live if i.ndim in dims} == want:
            return f"{{ndim: {dims}}}"
    for role in _ROLES:  # the usual no-decay set: 1-D tensors and what the model says (timm's no_weight_decay)
        if flat | {i.name for i in live if any(r == role for r, _ in i.roles)} == want:
            return f"{{any: [{{ndim: [0, 1]}}, {{role: {role}}}]}}"
    allowed = want | dont_care
    # How many unwanted tensors each last part and each module prefix holds: 0 means a glob may take it.
    tails_all, tails_bad, bad = Counter[str](), Counter[str](), Counter[str]()
    for info in infos:
        parts = info.name.split(".")
        tails_all[parts[-1]] += 1
        if info.name not in allowed:
            tails_bad[parts[-1]] += 1
            bad.update(".".join(parts[:k]) + "." for k in range(1, len(parts)))
    tails = sorted(t for t in {n.rsplit(".", 1)[-1] for n in names if "." in n}
                   if tails_all[t] > 1 and not tails_bad[t])  # "*.bias"
    globs = [f"*.{glob_escape(t)}" for t in tails]
    for name in names:
        parts = name.split(".")
        if len(parts) > 1 and parts[-1] in tails:
            continue
        prefix = next((".".join(parts[:k]) + "." for k in range(1, len(parts)) if not bad[".".join(parts[:k]) + "."]),
                      None)
        globs.append(glob_escape(prefix) + "*" if prefix else glob_escape(name))
    globs = list(dict.fromkeys(globs))
    return json.dumps(globs[0]) if len(globs) == 1 else "[" + ", ".join(map(json.dumps, globs)) + "]"


class _Fit:
    """``lr = base * decay ** (depth - start)`` over ``layering``, which ``fitted`` of ``total`` tensors follow."""

    def __init__(self, layering: str, why: str, base: float, decay: float, fitted: int, total: int, start: int = 0
                 ) -> None:
        self.layering, self.why, self.base, self.decay = layering, why, base, decay
        self.fitted, self.total, self.start = fitted, total, start

    def formula(self) -> str:
        return f"{num(self.decay)} ** " + (f"(depth - {self.start})" if self.start else "depth")


class _Writer:
    """Writes the file: route defaults from the most common values, one formula where it fits, and
    literal rules and modifiers for every tensor the rest would get wrong."""

    def __init__(self, table: Mapping[str, Settings | None], infos: Sequence[ParamInfo], classes: Mapping[str, type],
                 model: torch.nn.Module) -> None:
        self.trains = {n: s for n, s in table.items() if s is not None}
        if not self.trains:
            raise UsageError("the optimizer holds no parameter of the model")
        self.frozen = frozenset(n for n, s in table.items() if s is None)
        self.infos, self.classes, self.model = infos, classes, model
        routes = list(dict.fromkeys(s["optimizer"] for s in self.trains.values()))
        # The default optimizer is the one whose others are the shortest to route (Muon's matrices: {role: hidden}).
        cost = {r: sum(len(matcher(self._of(o), infos, self.frozen)) for o in routes if o != r) for r in routes}
        self.routes = sorted(routes, key=cost.__getitem__)
        self.dropped = {r: constructor_defaults(classes.get(r or "")) for r in self.routes}
        self.base = {r: self._common(r) for r in self.routes}

    def _of(self, route: str | None) -> list[str]:
        return [n for n, s in self.trains.items() if s["optimizer"] == route]

    def _common(self, route: str | None) -> Settings:
        names = self._of(route)
        mine = [self.trains[n] for n in names]
        keys = dict.fromkeys(k for s in mine for k in s if k != "optimizer")
        dropped = self.dropped[route]
        out: Settings = {}
        for key in keys:
            if key not in ("lr", "weight_decay") and any(key not in s for s in mine):
                continue  # not every group has it: set where it is, by modifiers
            choices = [json.loads(v) for v, _ in Counter(json.dumps(s.get(key)) for s in mine).most_common(3)]
            # The lr is the formula's business; for the rest, the value whose exceptions are the shortest to write.
            value = choices[0] if key == "lr" else min(choices, key=lambda c: self._cost(names, key, c))
            if key not in ("lr", "weight_decay") and key in dropped and _same(value, dropped[key]):
                continue  # the constructor's own default
            out[key] = value
        return out

    def _cost(self, names: list[str], key: str, value: Any) -> int:
        others: dict[str, list[str]] = {}
        for name in names:
            if not _same(self.trains[name].get(key), value):
                others.setdefault(json.dumps(self.trains[name].get(key)), []).append(name)
        return sum(len(matcher(group, self.infos, self.frozen)) for group in others.values())

    def _name(self, route: str | None) -> str:
        return "default" if route == self.routes[0] else str(route).lower()

    def text(self) -> str:
        main = self.routes[0]
        fit = self._fit(self._of(main))
        defaults = {**self.base[main], **({"lr": fit.base} if fit else {})}
        lines = ["# Written by lrrules.from_optimizer: the optimizer's groups, tensor by tensor.", "version: 1",
                 "defaults:", *(f"  {k}: {num(v)}" for k, v in defaults.items() if v is not None)]
        if main is not None:
            lines.append(f"optimizer: {{type: {main}}}")
        if len(self.routes) > 1:
            lines.append("optimizers:")
            for route in self.routes[1:]:
                entry = {"type": route, **self.base[route]}
                lines.append(f"  {self._name(route)}: {{" + ", ".join(f"{k}: {num(v)}" for k, v in entry.items()) + "}")
        if fit:
            lines.append(f"layers: {fit.layering}   # {fit.why}")
        rules, modifiers = self._literals(fit)
        lines += ["rules:", *rules, "  - name: rest", "    fallback: true"]
        if fit:
            lines.append(f'    lr_mult: "{fit.formula()}"   # {fit.fitted} of {fit.total} tensors: '
                         f"lr = {num(fit.base)} * {fit.formula()}")
        if modifiers:
            lines += ["modifiers:", *modifiers]
        return "\n".join(lines) + "\n"

    def _literals(self, fit: _Fit | None) -> tuple[list[str], list[str]]:
        """Rules for the lrs the defaults and formula miss; modifiers for weight decay, options,
        routes and freezing, one per distinct value."""
        depth = self._depths(fit.layering) if fit else {}
        lr_of = {r: (fit.base if fit and r == self.routes[0] else self.base[r]["lr"]) for r in self.routes}
        wanted: dict[tuple[str, str], list[str]] = {}
        for name, s in self.trains.items():
            route = s["optimizer"]
            lr = lr_of[route] * (fit.decay ** (depth[name] - fit.start) if fit else 1.0)
            if not _same(lr, s["lr"]):
                wanted.setdefault(("lr", num(s["lr"])), []).append(name)
            for key, value in s.items():
                if key in ("lr", "optimizer"):
                    continue
                expected = self.base[route].get(key, self.dropped[route].get(key)) if key != "weight_decay" \
                    else self.base[route].get(key)
                if not _same(expected, value):
                    wanted.setdefault((key, num(_plain(value))), []).append(name)
            if route != self.routes[0]:
                wanted.setdefault(("optimizer", self._name(route)), []).append(name)
        if self.frozen:
            wanted[("freeze", "true")] = [i.name for i in self.infos if i.name in self.frozen]
        rules: list[str] = []
        modifiers: list[str] = []
        for k, ((key, value), names) in enumerate(wanted.items(), 1):
            match = matcher(names, self.infos, self.frozen if key != "freeze" else frozenset())
            label = match[7:-1] if match.startswith("{role: ") else str(k)
            title = "no-decay" if key == "weight_decay" and value == "0.0" else key.replace("_", "-")
            if key == "lr":
                rules.append(f"  - {{name: lr-{label}, match: {match}, lr: {value}}}   # {len(names)} tensor(s)")
            elif key in ("weight_decay", "freeze", "optimizer"):
                modifiers.append(f"  - {{name: {title}-{label}, match: {match}, {key}: {value}}}")
            else:
                modifiers.append(f"  - {{name: {title}-{label}, match: {match}, options: {{{key}: {value}}}}}")
        return rules, modifiers

    def _depths(self, layering: str) -> dict[str, int]:
        probe = (f"version: 1\ndefaults: {{lr: 1.0}}\nlayers: {layering}\nunmatched: defaults\n"
                 'rules:\n  - {name: probe, match: "*", lr_mult: "depth + 1"}\n')
        try:
            plan = resolve(loads(probe, path="<probe>"), self.model)
        except LrrulesError:
            return {}
        return {a.name: round(a.lr - 1) for a in plan.params if a.lr is not None}

    def _fit(self, names: list[str]) -> _Fit | None:
        """The layering and ``base * d ** depth`` that the most of ``names`` follow, if it beats one lr."""
        lrs = {n: float(self.trains[n]["lr"]) for n in names}
        best = _Fit("", "", 0.0, 1.0, Counter(lrs.values()).most_common(1)[0][1], len(names))
        if len(set(lrs.values())) < 3:
            return None
        for layering, why in _LAYERINGS:
            depth = self._depths(layering)
            if not depth or not set(names) <= set(depth):
                continue
            by_depth: dict[int, list[float]] = {}
            for n in names:
                if lrs[n] not in by_depth.setdefault(depth[n], []):
                    by_depth[depth[n]].append(lrs[n])
            ks = sorted(by_depth)[:5]
            for i, ka in enumerate(ks):
                for kb in ks[i + 1:]:
                    for va in by_depth[ka][:3]:
                        for vb in by_depth[kb][:3]:
                            if va <= 0 or vb <= 0 or va == vb:
                                continue
                            exact = (vb / va) ** (1 / (kb - ka))
                            for d in dict.fromkeys([float(f"{exact:.12g}"), exact]):
                                fitted = [n for n in names if _same(va * d ** (depth[n] - ka), lrs[n])]
                                if len({depth[n] for n in fitted}) >= 3 and len(fitted) > best.fitted:
                                    start = min(depth[n] for n in fitted)
                                    best = _Fit(layering, why, va * d ** (start - ka), d, len(fitted), len(names), start)
        return best if best.layering else None
