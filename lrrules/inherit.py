"""``extends``: a rule file built on others, flattened into one document before it validates.

A file inherits its parents' ``defaults``, ``vars``, ``layers``, ``optimizer``, ``unmatched``,
``rules``, ``modifiers`` and ``phases``; a key it sets replaces the inherited one, except
``defaults``, ``vars`` and ``optimizer`` (its options are defaults), which merge key by key, and ``rules`` and ``modifiers``, which merge by
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

BY_NAME, BY_KEY = ("rules", "modifiers"), ("defaults", "vars", "optimizer")
#: How deep a chain of ``extends`` may go, and how many files one load may read: past these it is a
#: mistake (or an attack), never a team's layout.
MAX_EXTENDS_DEPTH, MAX_EXTENDS_FILES = 32, 256

#: Find a parent beside ``folder`` (``LookupError`` says why not), and read it: from disk, or git for REV:path.
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
PRESET, PRESETS_DIR = "lrrules:", Path(__file__).parent / "presets"


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
    """``data`` with its ``extends`` resolved (recursively), and the positions of every part. Each
    file is read and flattened once (``done``): a diamond repeated many times over is otherwise exponential."""
    if not isinstance(data, dict) or "extends" not in data:
        return data, source
    done = {} if done is None else done
    read_parent: Reader = reader or read
    parents = data["extends"]
    listed = [parents] if isinstance(parents, str) else parents
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise RuleFileError([source.error("'extends' takes a file name or a list of them", ("extends",))])
    if not listed:
        raise RuleFileError([source.error("'extends' lists no file; name one or remove 'extends'", ("extends",))])
    merged: tuple[Any, SourceMap] | None = None
    for i, name in enumerate(listed):
        loc: Loc = ("extends",) if isinstance(parents, str) else ("extends", i)
        try:
            target = _parent(name, folder, chain, done, locate)
        except LookupError as exc:
            raise RuleFileError([source.error(exc.args[0], loc)]) from None
        if target not in done:
            parent_data, parent_map = (read if name.startswith(PRESET) else read_parent)(target)
            _check_parent(parent_data, parent_map, data, source)
            done[target] = flatten(parent_data, parent_map, target.parent, (*chain, target), locate, reader, done)
        parent = done[target]
        merged = parent if merged is None else merge(*merged, *parent)
    assert merged is not None
    return merge(*merged, {k: v for k, v in data.items() if k != "extends"}, source)


def _parent(name: str, folder: PurePath, chain: tuple[PurePath, ...], done: dict[PurePath, Any],
            locate: Locator) -> PurePath:
    """The file ``extends`` names; ``LookupError`` saying why it may not be read."""
    if "\0" in name or not name.strip():
        raise LookupError("'extends' needs a file name, without NUL characters")
    try:
        target = preset(name) if name.startswith(PRESET) else locate(folder, name)
    except LookupError as exc:
        raise LookupError(f"'extends' names '{name}', {exc.args[0]}") from None
    if target in chain:
        raise LookupError(f"'extends' makes a cycle: {' -> '.join(str(p) for p in (*chain, target))}")
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise LookupError(f"'extends' goes more than {MAX_EXTENDS_DEPTH} files deep from {chain[0]}; flatten the chain")
    if target not in done and len(done) >= MAX_EXTENDS_FILES:
        raise LookupError(f"'extends' reads more than {MAX_EXTENDS_FILES} files in all from {chain[0]}; "
                          "extend fewer files")
    return target


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
            out[key] = {**base[key], **over[key]}
            inherited = {sub: sub for sub in base[key] if sub not in over[key]}
            out_map.graft(base_map, (key,), (key,), inherited)
            out_map.graft(over_map, (key,), (key,))  # the mapping's own place too: the file's
        else:
            which, which_map = (over, over_map) if key in over else (base, base_map)
            out[key] = which[key]
            out_map.graft(which_map, (key,), (key,))
    return out, out_map


def _by_name(key: str, base: list[Any], base_map: SourceMap, over: list[Any], over_map: SourceMap,
             out_map: SourceMap) -> list[Any]:
    # Keyed by name: replacing keeps the inherited place, and costs the same however many entries
    # the parents made. A name used twice in one file stays twice, so validation reports both places.
    entries: dict[Any, tuple[Any, SourceMap, int]] = {}
    for group, where in ((base, base_map), (over, over_map)):
        seen: set[Any] = set()
        for j, entry in enumerate(group):
            remove = isinstance(entry, dict) and entry.get("remove") is True
            if remove and set(entry) - {"name", "remove"}:
                extra = ", ".join(sorted(str(k) for k in set(entry) - {"name", "remove"}))
                raise RuleFileError([where.error(
                    f"an entry with 'remove: true' only names what it removes; drop {extra}", (key, j, "remove"))])
            name = _name_key(entry)
            name = ("twice", id(entry)) if name in seen else name
            seen.add(name)
            if remove and name in entries:
                del entries[name]
            else:
                entries[name] = (entry, where, j)
    # Entry j of a map becomes entry k of the result: one graft per map, however many entries.
    moved: dict[int, tuple[SourceMap, dict[str | int, str | int]]] = {}
    for k, (_, where, j) in enumerate(entries.values()):
        moved.setdefault(id(where), (where, {}))[1][j] = k
    for where, heads in moved.values():
        out_map.graft(where, (key,), (key,), heads)
    return [e for e, _, _ in entries.values()]


def _name_key(entry: Any) -> Any:
    name = entry.get("name") if isinstance(entry, dict) else None
    return ("name", name) if isinstance(name, str) else ("entry", id(entry))
