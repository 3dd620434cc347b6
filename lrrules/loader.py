"""Loading a rule file: read, flatten ``extends``, validate; every error of a file reported together.

:func:`load` and :func:`loads` read the text (:mod:`lrrules.reader`), resolve ``extends``
(:mod:`lrrules.inherit`) and ``vars`` overrides, and validate the flat document against the
language (:mod:`lrrules.language`); pydantic's errors become located RuleErrors here, once.
"""

from __future__ import annotations

import json
import posixpath
import sys
import unicodedata
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

from pydantic import ValidationError

from .entries import OPTION_TAGS, Defaults, Modifier, Optimizer, Rule
from .errors import POINTER_KEY, Location, Pointer, RuleError, RuleFileError, did_you_mean
from .fields import LAYER_TAGS, MATCHER_TAGS, MatchFields, ModuleLayers, PatternLayers
from .inherit import Locator, Reader, flatten, on_disk
from .language import EntrySummary, RuleSet, cross_entry_problems
from .reader import MAX_BYTES, MAX_DEPTH, SourceMap, parse, read


def load(spec: str | Path | Mapping[str, Any], overrides: Mapping[str, float] | None = None) -> RuleSet:
    """Read and validate a rule file (YAML, or JSON by its ``.json`` name) into a :class:`RuleSet`.

    ``spec`` is anything the command line opens: a file, ``-`` (standard input), a shipped preset
    (``lrrules:NAME``) or a file at a git revision (``REV:path``); or the rule file as data, a
    mapping or an OmegaConf ``DictConfig``, whose errors name ``<mapping>`` and the dotted place
    (``rules[2].lr_mult``). ``extends`` is resolved, and ``overrides`` replace values of ``vars``.
    Every problem is reported together in one :class:`~lrrules.errors.RuleFileError`.

    >>> load({"version": 1, "defaults": {"lr": 0.1}, "rules": [{"name": "all", "match": "*"}]}).path
    '<mapping>'
    >>> muon = lrrules.load("lrrules:muon")                               # doctest: +SKIP
    """
    if not isinstance(spec, (str, Path)):
        return _load_data(spec, overrides)
    if isinstance(spec, str):
        if spec.startswith("lrrules:"):  # a shipped preset, read as a file that only extends it
            return loads(f"version: 1\nextends: {json.dumps(spec)}\n", path=spec, overrides=overrides)
        if spec == "-":  # standard input, as cat and ruff read it; `extends` is relative to the directory
            stream = getattr(sys.stdin, "buffer", None)
            raw = stream.read(MAX_BYTES + 1) if stream is not None else sys.stdin.read(MAX_BYTES + 1)
            return loads(raw, "<stdin>", overrides=overrides)
        if ":" in spec and "\0" not in spec and not Path(spec).exists() and not spec.startswith(("/", "./")):
            return load_revision(spec, overrides)
    return _flat(*read(spec), Path(spec).resolve(), overrides)


def _flat(data: Any, source: SourceMap, where: PurePath, overrides: Mapping[str, float] | None,
          locate: Locator = on_disk, reader: Reader | None = None) -> RuleSet:
    """The document read from ``where``, its ``extends`` (relative to it) resolved, validated."""
    return validate(*flatten(data, source, where.parent, (where,), locate, reader), overrides)


def _load_data(spec: object, overrides: Mapping[str, float] | None) -> RuleSet:
    """A rule file given as data (an OmegaConf config resolved first; omegaconf is imported only
    for one); ``extends`` is relative to the current folder."""
    name = "<mapping>"
    if type(spec).__module__.split(".")[0] == "omegaconf":
        from omegaconf import OmegaConf

        name = f"<{type(spec).__name__}>"
        spec = OmegaConf.to_container(spec, resolve=True)
    source = SourceMap(name)
    return _flat(_plain(spec, source, ()), source, Path.cwd() / name, overrides)


def _plain(value: object, source: SourceMap, loc: tuple[str | int, ...]) -> Any:
    """``value`` as the reader's plain data (dicts and lists), copied, so no caller's object is kept."""
    if len(loc) > MAX_DEPTH:
        raise RuleFileError([source.error(f"nests deeper than {MAX_DEPTH} levels", loc)])
    if isinstance(value, Mapping):
        return {key: _plain(item, source, (*loc, key)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item, source, (*loc, i)) for i, item in enumerate(value)]
    return value


def loads(text: str | bytes, path: str = "<rules>", fmt: str = "yaml",
          overrides: Mapping[str, float] | None = None) -> RuleSet:
    """Like :func:`load`, from text; ``path`` names it in messages (and is where ``extends`` is relative to)."""
    return _flat(*parse(text, path, fmt), Path(path).resolve() if path != "<rules>" else Path.cwd() / path, overrides)


def validate(data: Any, source: SourceMap, overrides: Mapping[str, float] | None = None) -> RuleSet:
    """Validate parsed data into a RuleSet, turning pydantic's errors into located RuleErrors."""
    if overrides:
        data = _override(data, source, overrides)
    lookalikes = _lookalike_names(data, source)
    try:
        rules = RuleSet.model_validate(data, context={"source": source})
    except ValidationError as exc:
        # Problems between entries are found on the raw document, so that they are all reported,
        # beside the field errors that would stop pydantic before its check across entries.
        errors = [_located(e, source) for e in exc.errors(include_url=False) if e["type"] != "entries"]
        errors += [RuleError(message, source.locate(loc), loc) for loc, message in cross_entry_problems(_entries(data))]
        errors += lookalikes
        errors.sort(key=lambda e: (e.path != source.path, e.path, e.line or 10**9, e.col))
        raise RuleFileError(errors) from None
    if lookalikes:
        raise RuleFileError(lookalikes)
    return rules


#: Letters of other scripts that look like a Latin letter (a few from Unicode's confusables.txt:
#: those a name is most often typed or pasted with); NFKC first folds fullwidth, ligatures, math letters.
_LOOKALIKE = str.maketrans("асеһіјӏорԛѕԁуԝхАВСЕНІЈКМОРЅТХУΑΒΕΗΙΚΜΝΟΡΤΥΧΖаοντικ",
                           "acehijlopqsdywxABCEHIJKMOPSTXYABEHIKMNOPTYXZaovtik")


def _skeleton(name: str) -> str:
    return unicodedata.normalize("NFKC", name).translate(_LOOKALIKE)


def _entries_of(data: Any) -> list[tuple[str, int, dict[str, Any]]]:
    """The rules and modifiers of a raw document that are mappings, with their kind and position."""
    groups = [(kind, data.get(kind) if isinstance(data, dict) else None) for kind in ("rules", "modifiers")]
    return [(kind, i, entry) for kind, group in groups if isinstance(group, list)
            for i, entry in enumerate(group) if isinstance(entry, dict)]


def _lookalike_names(data: Any, source: SourceMap) -> list[RuleError]:
    """An entry whose name looks like another's but is not it: above all, one meant to replace an
    inherited rule (``extends``) that would silently be added as a second rule instead."""
    errors = []
    seen: dict[tuple[str, str], tuple[str, int]] = {}
    for kind, i, entry in _entries_of(data):
        if isinstance(name := entry.get("name"), str):
            other = seen.setdefault((kind, _skeleton(name)), (name, i))
            if other[0] != name:
                differ = next((f"U+{ord(a):04X} {unicodedata.name(a, '?')} where it has {b!r}"
                               for a, b in zip(name, other[0]) if a != b), "other characters")
                where = source.locate((kind, other[1], "name"))
                errors.append(source.error(
                    f"the name {name!r} looks like {other[0]!r} ({kind}[{other[1]}], at {where}) but is not it: it "
                    f"holds {differ}; an entry replaces an inherited one only under the very same name, so as it "
                    "is this is a second entry: write the name exactly, or choose one that does not look like it",
                    (kind, i, "name")))
    return errors


def _entries(data: Any) -> list[EntrySummary]:
    """The rules and modifiers of a raw document as the checks across entries see them."""
    return [(kind, i, entry.get("name"), entry.get("remove") is True, kind == "rules" and entry.get("fallback") is True)
            for kind, i, entry in _entries_of(data)]


def _override(data: Any, source: SourceMap, overrides: Mapping[str, float]) -> Any:
    known = data.get("vars") if isinstance(data, dict) else None
    known = known if isinstance(known, dict) else {}
    errors = []
    for name, value in overrides.items():
        if name not in known:
            hint = did_you_mean(name, map(str, known))
            have = ", ".join(map(str, known)) or "none"
            errors.append(source.error(f"cannot set '{name}': the file has no such var{hint}; its vars: {have}",
                                       ("vars",)))
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= sys.float_info.max:
            shown = repr(value) if not isinstance(value, int) or value.bit_length() < 1024 else "a huge integer"
            errors.append(source.error(f"cannot set '{name}' to {shown}: a var is a finite number", ("vars",)))
    if errors:
        raise RuleFileError(errors)
    return {**data, "vars": {**known, **overrides}}


_VOCABULARY = sorted(
    {name for model in (RuleSet, Rule, Modifier, MatchFields, Optimizer, ModuleLayers, PatternLayers, Defaults)
     for name in model.model_fields}
    | {"any", "all", "not", "$schema"}
)


def _located(error: Any, source: SourceMap) -> RuleError:
    loc = [part for part in error["loc"] if part not in MATCHER_TAGS and part not in OPTION_TAGS]
    if len(loc) > 1 and loc[0] == "layers" and loc[1] in LAYER_TAGS:
        del loc[1]  # the 'by' value pydantic puts in the path of a discriminated union
    # Where a validator pointed more precisely than pydantic's path: read here, and only here.
    pointer = (error.get("ctx") or {}).get(POINTER_KEY)
    pointer = pointer if isinstance(pointer, Pointer) else Pointer()
    loc += pointer.below
    kind = error["type"]
    message = error["msg"]
    if kind.startswith("value_error") and message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if kind == "extra_forbidden":
        key = loc[-1] if loc else "?"
        return source.error(f"unknown key '{key}'{did_you_mean(str(key), _VOCABULARY)}", loc, key=True)
    if kind == "missing":
        return source.error(f"missing key '{loc[-1]}'", loc[:-1]) if loc else source.error("missing key")
    if kind == "literal_error" and loc == ["version"]:
        message = f"unsupported version {error.get('input')!r}; this lrrules reads version 1"
    elif kind in ("model_type", "dict_type") and not loc:
        message = "a rule file is a mapping with 'version', 'defaults' and 'rules'"
    elif kind == "entries":
        pass  # a message of our own, placed by its loc
    elif not kind.endswith(("formula", "regex")) and isinstance(error.get("input"), (str, int, float, type(None))):
        message += f", got {_short(error['input'])}"
    offset = pointer.offset if pointer.expr else None
    return RuleError(message, source.locate(loc, key=pointer.key, offset=offset), loc, pointer.expr, offset)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_revision(spec: str, overrides: Mapping[str, float] | None = None) -> RuleSet:
    """Load ``REV:path`` from git (``HEAD~1:rules.yaml``), and what it extends from the same revision;
    the revision goes after ``--end-of-options`` and may not start with ``-``: never a git option."""
    from pathlib import PurePosixPath

    rev, _, path = spec.partition(":")
    if not rev or rev.startswith("-") or "\0" in spec:
        raise RuleFileError([RuleError("not a git revision and path: write REV:path, such as HEAD~1:rules.yaml "
                                       "(a revision cannot start with '-')", Location(spec.replace("\0", "\\0")))])
    relative = path.startswith("./")  # git reads './x' relative to the current folder, 'x' to the top

    def locate(folder: PurePath, name: str) -> PurePath:
        if name.startswith("/"):
            raise LookupError("an absolute path, which is not in the revision")
        return PurePosixPath(posixpath.normpath(posixpath.join(str(folder), name)))

    def reader(target: PurePath) -> tuple[Any, SourceMap]:
        where = f"{rev}:{'./' if relative else ''}{target}"
        return parse(_git_blob(where), where, "json" if str(target).endswith(".json") else "yaml")

    first = PurePosixPath(posixpath.normpath(path))
    return _flat(*reader(first), first, overrides, locate, reader)


def _git_blob(where: str) -> bytes:
    """The bytes of ``REV:path`` (``git cat-file blob``: plumbing, so no textconv filter runs)."""
    import subprocess

    try:
        done = subprocess.run(["git", "cat-file", "blob", "--end-of-options", where], capture_output=True,
                              timeout=30, check=False)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise RuleFileError([RuleError(f"cannot run git to read it: {exc}", Location(where))]) from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["git cat-file failed"]
        raise RuleFileError([RuleError(f"not found in git: {reason[0]}", Location(where))])
    return done.stdout
