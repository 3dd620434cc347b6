"""``extends``: a rule file built on others, flattened into one document before it validates.

A file inherits its parents' ``defaults``, ``vars``, ``layers``, ``optimizer``, ``unmatched``,
``rules``, ``modifiers`` and ``phases``; a key it sets replaces the inherited one, except
``defaults`` and ``vars``, which merge key by key, and ``rules`` and ``modifiers``, which merge by
name: an entry with an inherited name replaces that entry, ``{name: X, remove: true}`` drops it, and
new names are added. Several parents apply in order, then the file itself. Every position keeps its
own file, so an error in a parent is reported at ``base.yaml:line:col``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import RuleFileError
from .source import Loc, SourceMap, read

BY_NAME = ("rules", "modifiers")
BY_KEY = ("defaults", "vars")


def flatten(data: Any, source: SourceMap, folder: Path, chain: tuple[Path, ...]) -> tuple[Any, SourceMap]:
    """``data`` with its ``extends`` resolved (recursively), and the positions of every part."""
    if not isinstance(data, dict) or "extends" not in data:
        return data, source
    parents = data["extends"]
    listed = [parents] if isinstance(parents, str) else parents
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise RuleFileError([source.error("'extends' takes a file name or a list of them", ("extends",))])
    merged: tuple[Any, SourceMap] | None = None
    for i, name in enumerate(listed):
        loc: Loc = ("extends",) if isinstance(parents, str) else ("extends", i)
        target = (folder / name).resolve()
        files = " -> ".join(str(p) for p in (*chain, target))
        if target in chain:
            raise RuleFileError([source.error(f"'extends' makes a cycle: {files}", loc)])
        if not target.is_file():
            raise RuleFileError([source.error(f"'extends' names '{name}', which is not a file ({files})", loc)])
        parent = flatten(*read(target), target.parent, (*chain, target))
        merged = parent if merged is None else merge(*merged, *parent)
    own = {k: v for k, v in data.items() if k != "extends"}
    assert merged is not None
    return merge(*merged, own, source)


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
        if at is not None and entry.get("remove") is True:
            del entries[at]
        elif at is not None:
            entries[at] = (entry, over_map, j)
        else:
            entries.append((entry, over_map, j))
    for k, (_, where, j) in enumerate(entries):
        out_map.graft(where, (key, j), (key, k))
    return [e for e, _, _ in entries]
