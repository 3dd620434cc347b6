"""``extends``: a rule file built on others, flattened into one document before it validates.

A file inherits its parents' ``defaults``, ``vars``, ``layers``, ``optimizer``, ``unmatched``,
``rules``, ``modifiers`` and ``phases``; a key it sets replaces the inherited one, except
``defaults`` and ``vars``, which merge key by key, and ``rules`` and ``modifiers``, which merge by
name: an entry with an inherited name replaces that entry, ``{name: X, remove: true}`` drops it, and
new names are added. Several parents apply in order, then the file itself. Every position keeps its
own file, so an error in a parent is reported at ``base.yaml:line:col``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

from .errors import RuleFileError
from .reader import Loc, SourceMap, read

BY_NAME = ("rules", "modifiers")
BY_KEY = ("defaults", "vars")

#: Finds the parent that ``name`` names beside ``folder`` (raising ``LookupError`` with the reason
#: when there is none), and reads it: from disk by default, from one git revision for ``REV:path``.
Locator = Callable[[PurePath, str], PurePath]
Reader = Callable[[PurePath], tuple[Any, SourceMap]]


def on_disk(folder: PurePath, name: str) -> PurePath:
    """The parent ``name`` relative to ``folder`` on disk; ``LookupError`` if it is not a file."""
    try:
        target = (Path(folder) / name).resolve()
        if target.is_file():
            return target
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, on Python before 3.13
        raise LookupError("which cannot be resolved (a symlink loop?)") from None
    raise LookupError("which is not a file")


#: ``extends: lrrules:NAME`` names a preset shipped in ``lrrules/presets/NAME.yaml``.
PRESET = "lrrules:"
PRESETS_DIR = Path(__file__).parent / "presets"


def presets() -> list[str]:
    """The names of the shipped presets (``no-decay``, ``llrd``, ...)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset(name: str) -> Path:
    """The file of preset ``lrrules:NAME``; ``LookupError`` naming the presets when there is none.

    >>> preset("lrrules:no-decay").name
    'no-decay.yaml'
    """
    stem = name[len(PRESET):]
    if stem not in presets():
        raise LookupError(f"which is no preset; the presets: {', '.join(PRESET + p for p in presets())}")
    return PRESETS_DIR / f"{stem}.yaml"


def flatten(data: Any, source: SourceMap, folder: PurePath, chain: tuple[PurePath, ...],
            locate: Locator = on_disk, reader: Reader | None = None,
            done: dict[PurePath, tuple[Any, SourceMap]] | None = None) -> tuple[Any, SourceMap]:
    """``data`` with its ``extends`` resolved (recursively), and the positions of every part.

    Each file is read and flattened once (``done``), however often the tree of parents names it:
    a diamond repeated many times over is otherwise exponential.
    """
    if not isinstance(data, dict) or "extends" not in data:
        return data, source
    done = {} if done is None else done
    reader = reader or read
    parents = data["extends"]
    listed = [parents] if isinstance(parents, str) else parents
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise RuleFileError([source.error("'extends' takes a file name or a list of them", ("extends",))])
    if not listed:
        raise RuleFileError([source.error("'extends' lists no file; name one or remove 'extends'", ("extends",))])
    merged: tuple[Any, SourceMap] | None = None
    for i, name in enumerate(listed):
        loc: Loc = ("extends",) if isinstance(parents, str) else ("extends", i)
        if "\0" in name or not name.strip():
            raise RuleFileError([source.error("'extends' needs a file name, without NUL characters", loc)])
        try:
            target = preset(name) if name.startswith(PRESET) else locate(folder, name)
        except LookupError as exc:
            raise RuleFileError([source.error(f"'extends' names '{name}', {exc.args[0]}", loc)]) from None
        files = " -> ".join(str(p) for p in (*chain, target))
        if target in chain:
            raise RuleFileError([source.error(f"'extends' makes a cycle: {files}", loc)])
        if target not in done:
            parent_data, parent_map = (read if name.startswith(PRESET) else reader)(target)
            _check_parent(parent_data, parent_map, data, source)
            done[target] = flatten(parent_data, parent_map, target.parent, (*chain, target), locate, reader, done)
        parent = done[target]
        merged = parent if merged is None else merge(*merged, *parent)
    own = {k: v for k, v in data.items() if k != "extends"}
    assert merged is not None
    return merge(*merged, own, source)


def _check_parent(parent: Any, parent_map: SourceMap, child: dict[str, Any], child_map: SourceMap) -> None:
    if not isinstance(parent, dict):
        raise RuleFileError([parent_map.error(
            f"a file that is extended (by {child_map.path}) must be a mapping of rule-file keys, "
            f"not a {type(parent).__name__}")])
    if "version" in parent and "version" in child:
        mine, theirs = parent["version"], child["version"]
        if (type(mine), mine) != (type(theirs), theirs):
            raise RuleFileError([parent_map.error(
                f"version {mine!r} differs from version {theirs!r} of {child_map.path}, which extends this "
                "file; a file and its parents are written in one version", ("version",))])


def merge(base: dict[str, Any], base_map: SourceMap, over: dict[str, Any],
          over_map: SourceMap) -> tuple[dict[str, Any], SourceMap]:
    """``over`` on top of ``base`` (see the module's rules), with both maps' positions."""
    if not isinstance(base, dict):
        return over, over_map
    out: dict[str, Any] = {}
    out_map = SourceMap(over_map.path)
    for key in [*base, *(k for k in over if k not in base)]:
        if key == "extends":
            continue
        if key in BY_NAME and isinstance(base.get(key, []), list) and isinstance(over.get(key, []), list):
            out[key] = _by_name(key, base.get(key, []), base_map, over.get(key, []), over_map, out_map)
        elif key in BY_KEY and isinstance(base.get(key), dict) and isinstance(over.get(key), dict):
            out[key] = {}
            for sub in [*base[key], *(k for k in over[key] if k not in base[key])]:
                which, which_map = (over, over_map) if sub in over[key] else (base, base_map)
                out[key][sub] = which[key][sub]
                out_map.graft(which_map, (key, sub), (key, sub))
            if (key,) in over_map.values:  # both files set the mapping; its own place is the file's
                out_map.values[(key,)] = over_map.values[(key,)]
        else:
            which, which_map = (over, over_map) if key in over else (base, base_map)
            out[key] = which[key]
            out_map.graft(which_map, (key,), (key,))
    return out, out_map


def _by_name(key: str, base: list[Any], base_map: SourceMap, over: list[Any], over_map: SourceMap,
             out_map: SourceMap) -> list[Any]:
    entries: list[tuple[Any, SourceMap, int]] = [(e, base_map, j) for j, e in enumerate(base)]

    def find(name: Any) -> int | None:
        return next((k for k, (e, _, _) in enumerate(entries) if isinstance(e, dict) and e.get("name") == name),
                    None)

    for j, entry in enumerate(over):
        name = entry.get("name") if isinstance(entry, dict) else None
        at = find(name) if name is not None else None
        if isinstance(entry, dict) and entry.get("remove") is True and set(entry) - {"name", "remove"}:
            extra = ", ".join(sorted(str(k) for k in set(entry) - {"name", "remove"}))
            raise RuleFileError([over_map.error(
                f"an entry with 'remove: true' only names what it removes; drop {extra}", (key, j, "remove"))])
        if at is not None and entry.get("remove") is True:
            del entries[at]
        elif at is not None:
            entries[at] = (entry, over_map, j)
        else:
            entries.append((entry, over_map, j))
    for k, (_, where, j) in enumerate(entries):
        out_map.graft(where, (key, j), (key, k))
    return [e for e, _, _ in entries]
