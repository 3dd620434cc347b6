"""Safe resume: an optimizer state dict is loaded only onto the group layout it was saved under.

torch matches optimizer state to parameters by position: when the grouping changes between a save
and a restart (a rule edited, a shape changed), ``optimizer.load_state_dict`` puts moments onto the
wrong tensors without a word. lrrules records each group's parameter names, shapes and settings in
the state dict and checks them on load.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ResumeError
from .params import clean_name
from .plan import Plan

if TYPE_CHECKING:
    import torch

RECORD_KEY = "lrrules"
SHOWN = 10


def layout(plan: Plan) -> list[dict[str, Any]]:
    """Each group's parameter names and shapes, in order, with its settings: what the state dict records."""
    shapes = {p.name: list(p.shape) for p in plan.params}
    return [
        {"params": list(g.params), "shapes": [shapes[n] for n in g.params], "lr": g.lr,
         "weight_decay": g.weight_decay, "options": {k: list(v) if isinstance(v, tuple) else v
                                                      for k, v in g.options.items()}}
        for g in plan.groups
    ]


def in_order(optimizer: torch.optim.Optimizer, plan: Plan) -> list[dict[str, Any]]:
    """:func:`layout` in the optimizer's group order (a combined one lists each optimizer's groups together)."""
    groups = layout(plan)
    by_names = {tuple(g["params"]): g for g in groups}
    mine = [by_names.get(tuple(g.get("param_names", ()))) for g in optimizer.param_groups]
    return [g for g in mine if g is not None] if None not in mine else groups


class ResumeWarning(UserWarning):
    """A resumed optimizer keeps the checkpoint's settings where the rule file now says otherwise."""


def attach(optimizer: torch.optim.Optimizer, plan: Plan) -> None:
    """Make ``optimizer.state_dict()`` carry the plan's layout under ``"lrrules"`` (whole, and in each
    param group its fingerprint and settings, which DCP's state dict functions carry), checked on load."""
    groups = in_order(optimizer, plan)
    record = {"fingerprint": plan.fingerprint, "groups": groups}

    def tag(*_: Any) -> None:  # again after a load, which puts the checkpoint's group values in place
        for group, mine in zip(optimizer.param_groups, groups):
            group[RECORD_KEY] = {"fingerprint": plan.fingerprint, "lr": mine["lr"], "weight_decay": mine["weight_decay"]}

    def add_record(_: Any, state_dict: dict[str, Any]) -> dict[str, Any]:
        state_dict[RECORD_KEY] = record
        return state_dict

    def check_layout(_: Any, state_dict: dict[str, Any]) -> dict[str, Any]:
        # Trainers (Hugging Face, Lightning) and DCP call optimizer.load_state_dict themselves: the check runs there.
        changed = changes(_saved_layout(state_dict, groups, plan.fingerprint)["groups"], groups)
        if changed:
            warnings.warn(ResumeWarning(str(ResumeReport(plan.fingerprint, changed))), stacklevel=3)
        return {k: v for k, v in state_dict.items() if k != RECORD_KEY}

    tag()
    optimizer.register_state_dict_post_hook(add_record)
    optimizer.register_load_state_dict_pre_hook(check_layout)
    optimizer.register_load_state_dict_post_hook(tag)


@dataclass(frozen=True)
class SettingChange:
    """A setting of a group that differs between the checkpoint and the rules."""

    group: int
    setting: str
    saved: Any
    now: Any

    def __str__(self) -> str:
        return f"group {self.group}: {self.setting} {self.saved} in the checkpoint, {self.now} in the rules"


@dataclass(frozen=True)
class ResumeReport:
    """What :func:`load_optimizer_state` found: the fingerprint, and the settings that changed."""

    fingerprint: str
    changed: tuple[SettingChange, ...]

    def __str__(self) -> str:
        if not self.changed:
            return f"optimizer state loaded; layout {self.fingerprint} unchanged"
        return (f"optimizer state loaded (layout {self.fingerprint} unchanged); the optimizer keeps the "
                "checkpoint's values (and a resumed schedule its own), the rules now say otherwise for:\n  "
                + "\n  ".join(map(str, self.changed)) + "\nto apply the file's, set each group's lr and "
                "weight_decay after loading, or start from a fresh optimizer state")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state_dict: Mapping[str, Any], plan: Plan) -> ResumeReport:
    """Load ``state_dict`` into ``optimizer`` if it was saved under ``plan``'s group layout; else
    raise :class:`ResumeError` naming each parameter that moved, appeared, disappeared or changed
    shape. Where only settings differ (an lr edited), it loads (the optimizer then holds the
    checkpoint's values, as after ``optimizer.load_state_dict``) and the report lists them.

    >>> print(lrrules.load_optimizer_state(optimizer, torch.load("opt.pt"), plan))   # doctest: +SKIP
    optimizer state loaded; layout 3f2a... unchanged
    """
    groups = in_order(optimizer, plan)
    current = [list(g.get("param_names", [])) for g in optimizer.param_groups]
    if current != [g["params"] for g in groups]:
        raise ResumeError("the optimizer was not built from this plan (its groups hold other parameters); "
                          "build it with lrrules.build_optimizer or plan.param_groups()")
    if not isinstance(state_dict, Mapping):
        raise ResumeError(f"an optimizer state dict is a mapping, not a {type(state_dict).__name__}")
    saved = _saved_layout(state_dict, groups, plan.fingerprint)
    try:  # the record goes along: an optimizer built by lrrules checks it again in its pre-hook
        with warnings.catch_warnings():  # what it would warn of is this report
            warnings.simplefilter("ignore", ResumeWarning)
            optimizer.load_state_dict(dict(state_dict))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ResumeError(f"torch could not load the optimizer state: {exc!r}") from None
    return ResumeReport(plan.fingerprint, changes(saved["groups"], groups))


def changes(saved: list[dict[str, Any]], groups: list[dict[str, Any]]) -> tuple[SettingChange, ...]:
    """Each setting of a group that the checkpoint's record and the rules give differently."""
    changed: list[SettingChange] = []
    for index, (old, new) in enumerate(zip(saved, groups)):
        was, now = old.get("options", {}), new["options"]
        pairs = [(k, old[k], new[k]) for k in ("lr", "weight_decay") if old.get(k) is not None]
        pairs += [(k, was.get(k), now.get(k)) for k in sorted(set(was) | set(now)) if "options" in old]
        changed += [SettingChange(index, k, a, b) for k, a, b in pairs if a != b]
    return tuple(changed)


def _saved_layout(state_dict: Mapping[str, Any], groups: list[dict[str, Any]], fingerprint: str) -> dict[str, Any]:
    """The layout record ``state_dict`` was saved with (or read from its groups' ``param_names`` and
    tags: all DCP keeps), checked against ``groups``: raises :class:`ResumeError` naming each parameter that moved."""
    saved = state_dict.get(RECORD_KEY)
    if saved is None:  # an empty or damaged record is checked as one, never taken for none
        saved = _from_param_names(state_dict, groups)
    check_layout(saved, groups, fingerprint)
    _check_state(state_dict, saved["groups"], groups)
    return dict(saved)


def check_layout(saved: Any, groups: list[dict[str, Any]], fingerprint: str, what: str = "the optimizer state") -> None:
    """The layout record ``saved`` (data from a file: checked first) against ``groups``, this plan's:
    :class:`ResumeError` naming each parameter that moved between groups or changed shape."""
    _check_record(saved)
    problems = _layout_problems(saved["groups"], groups)
    if not problems and saved.get("fingerprint") not in (None, fingerprint):
        problems = [f"its layout {saved['fingerprint']} is not this plan's {fingerprint} (a shape changed)"]
    if problems:
        raise ResumeError(f"{what} was saved under another group layout and would put state on "
                          "the wrong parameters:\n  " + "\n  ".join(problems))


def _check_state(state_dict: Mapping[str, Any], saved: list[dict[str, Any]], groups: list[dict[str, Any]]) -> None:
    """The part torch loads (``param_groups``, ``state``) agrees with the record: torch matches state to
    tensors by position, so an edit there (ids reordered, a moment of another shape) would misplace it.
    Ids are torch's (0, 1, 2... across the groups) or, from DCP, the parameters' names."""
    torch_groups = state_dict.get("param_groups")
    if not isinstance(torch_groups, list) or len(torch_groups) != len(saved):
        count = len(torch_groups) if isinstance(torch_groups, list) else "no"
        raise ResumeError(f"the state dict has {count} param_groups but its layout record has {len(saved)} "
                          "groups; it was edited, and is not loaded")
    # Each id's parameter today: its name, its shape, and its group's size (LBFGS keeps flat vectors of it).
    params = [(n, tuple(s), sum(math.prod(x) for x in now["shapes"])) for now in groups
              for n, s in zip(now["params"], now["shapes"])]
    position: dict[Any, int] = {}
    for i, (group, record) in enumerate(zip(torch_groups, saved)):
        ids = group.get("params") if isinstance(group, Mapping) else None
        if not isinstance(ids, list) or len(ids) != len(record["params"]):
            size = len(ids) if isinstance(ids, list) else "no"
            raise ResumeError(f"group {i} of the state dict holds {size} parameters but the layout record lists "
                              f"{len(record['params'])}; it was edited, and is not loaded")
        first = len(position)
        if ids != list(range(first, first + len(ids))) and not all(
                isinstance(k, str) and (n == clean_name(k) or n.endswith("." + clean_name(k)))
                for k, n in zip(ids, record["params"])):
            raise ResumeError(f"group {i} of the state dict holds parameter ids {_shown(ids)}, not "
                              f"{_shown(list(range(first, first + len(ids))))} as torch saves them: they were "
                              "reordered, and the state would go to other parameters")
        position.update((k, first + j) for j, k in enumerate(ids))
        named = group.get("param_names")
        if named is not None and list(named) != record["params"]:
            wrong = next((k for k, (a, b) in enumerate(zip(named, record["params"])) if a != b), min(len(named), len(ids)))
            raise ResumeError(f"group {i}: its param_names disagree with the layout record at position {wrong} "
                              f"({_shown(list(named)[wrong:wrong + 1])} against {_shown(record['params'][wrong:wrong + 1])}); "
                              "the state dict was edited, and is not loaded")
    state = state_dict.get("state", {})
    if not isinstance(state, Mapping):
        raise ResumeError("the state dict's 'state' is not a mapping of parameter id to its state")
    for key, values in state.items():
        if type(key) not in (int, str) or key not in position:
            raise ResumeError(f"the state dict holds state for parameter id {key!r}, which no group holds")
        name, shape, whole = params[position[key]]
        if not isinstance(values, Mapping):
            raise ResumeError(f"the state of '{name}' is not a mapping")
        for moment, value in values.items():
            found = getattr(value, "shape", None)
            if found is not None and not _fits(tuple(found), shape) and tuple(found) != (whole,):
                raise ResumeError(f"the state '{moment}' of '{name}' has shape {tuple(found)}, but the "
                                  f"parameter's is {shape}; it belongs to another tensor, and is not loaded")


def _fits(moment: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether a state tensor of shape ``moment`` can be a parameter of ``shape``'s: a scalar (a step),
    the parameter's own shape, or a factored statistic (Adafactor's rows or columns: 1 where it differs)."""
    if not moment or moment == shape:
        return True
    return len(moment) == len(shape) and math.prod(moment) < math.prod(shape) and all(m in (s, 1) for m, s in zip(moment, shape))


def _shown(items: list[Any]) -> str:
    return repr(items) if len(items) <= 6 else repr(items[:6])[:-1] + ", ...]"


def _from_param_names(state_dict: Mapping[str, Any], mine: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        tags = [g.get(RECORD_KEY) if isinstance(g.get(RECORD_KEY), Mapping) else {} for g in state_dict["param_groups"]]
        lost = [i for i, g in enumerate(state_dict["param_groups"]) if "param_names" not in g and not tags[i]]
        if lost and any(tags):  # DCP hands each saved group to a group now holding one of its tensors: a
            # regrouped file leaves some group with none of the saved settings
            names = [n for i in lost if i < len(mine) for n in mine[i]["params"]]
            raise ResumeError(f"the optimizer state was saved under another group layout: group(s) {lost} of this "
                              f"optimizer got no saved group ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''} "
                              "were grouped otherwise when it was saved); load it with the rule file it was saved "
                              "under, or start the optimizer afresh")
        groups = [{"params": list(g["param_names"]), "shapes": None, "lr": t.get("lr"),
                   "weight_decay": t.get("weight_decay")} for g, t in zip(state_dict["param_groups"], tags)]
    except (KeyError, TypeError, AttributeError):
        raise ResumeError("this state dict carries no record of its group layout (not saved from an optimizer "
                          "lrrules built, and its groups have no 'param_names'); it cannot be checked") from None
    return {"groups": groups, "fingerprint": next((t["fingerprint"] for t in tags if "fingerprint" in t), None)}


def _check_record(saved: Any) -> None:
    """The layout record is data from a file: its every part is checked before it is read."""
    def fail(what: str) -> ResumeError:
        return ResumeError(f"the layout record ('{RECORD_KEY}') of this state dict is malformed: {what}; it "
                           "was not saved by lrrules, or was edited")

    if not isinstance(saved, Mapping) or not isinstance(saved.get("groups"), list):
        raise fail("it needs 'groups', a list")
    for i, group in enumerate(saved["groups"]):
        if not isinstance(group, Mapping):
            raise fail(f"group {i} is not a mapping")
        names, shapes = group.get("params"), group.get("shapes")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise fail(f"group {i} needs 'params', a list of parameter names")
        if shapes is not None and not (
                isinstance(shapes, list) and len(shapes) == len(names)
                and all(isinstance(s, (list, tuple)) and all(type(d) is int for d in s) for s in shapes)):
            raise fail(f"group {i}: 'shapes' must hold one list of whole numbers per parameter")
        if not isinstance(group.get("options", {}), Mapping):
            raise fail(f"group {i}: 'options' must be a mapping")


def _layout_problems(saved: list[dict[str, Any]], now: list[dict[str, Any]]) -> list[str]:
    where_saved = {n: (i, g["shapes"][k] if g.get("shapes") else None)
                   for i, g in enumerate(saved) for k, n in enumerate(g["params"])}
    where_now = {n: (i, g["shapes"][k]) for i, g in enumerate(now) for k, n in enumerate(g["params"])}
    lines = []
    for name, (group, shape) in where_now.items():
        if name not in where_saved:
            lines.append(f"'{name}' is in group {group} now and was in no group")
            continue
        old_group, old_shape = where_saved[name]
        if old_shape is not None and list(old_shape) != list(shape):
            lines.append(f"'{name}' changed shape: {tuple(old_shape)} -> {tuple(shape)}")
        if old_group != group:
            lines.append(f"'{name}' moved from group {old_group} to group {group}")
    lines += [f"'{name}' was in group {g} and is in no group now"
              for name, (g, _) in where_saved.items() if name not in where_now]
    if not lines and [g["params"] for g in saved] != [g["params"] for g in now]:
        group, at, name = next((i, k, n) for i, (old, new) in enumerate(zip(saved, now))
                               for k, (o, n) in enumerate(zip(old["params"], new["params"])) if o != n)
        lines.append(f"the parameters are in the same groups but in another order: '{name}' is at position {at} of "
                     f"group {group} now, and '{saved[group]['params'][at]}' was there")
    if len(lines) > SHOWN:
        lines = lines[:SHOWN] + [f"... and {len(lines) - SHOWN} more"]
    return lines
