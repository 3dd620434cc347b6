"""A cache of what a command-line model source yields, so the second ``check``/``resolve``/``explain``
on the same model answers without importing torch or building anything.

An entry holds the parameters (names, shapes, owning module classes and their bases, aliases,
``requires_grad``), whether they are in the model's order, and timm's layer map (the one thing a
rule file reads from the module itself, through ``layers: {by: timm}``). It is plain JSON in
``$XDG_CACHE_HOME/lrrules/models`` (``~/.cache/lrrules/models`` without it), one file per key, and the
key holds everything that could change the answer: the source, ``--num-classes``, ``--model-arg``,
the versions of Python, lrrules, torch, timm, torchvision and transformers, the contents of
lrrules' own model-reading modules, and the size and modification time of every file the source
reads (a checkpoint and its shards, a Hugging Face config folder). An entry that does not parse,
does not hold its own key, or is malformed is rebuilt, never trusted. A user's own factory
(``package.module:factory``) is cached only when asked (its code is not part of the key).

>>> model = cached_open_model("resnet18", num_classes=2)        # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from .params import ParamInfo

#: Bumped whenever an entry's layout changes: older entries then miss instead of being misread.
FORMAT = 4  # 2: the owning modules' plain attributes (for where: conditions); 3: each tensor's roles; 4: the owner of each name of a tied tensor
_LIBRARIES = ("lrrules", "torch", "timm", "torchvision", "transformers")
#: lrrules' own modules whose code decides what a source yields (a development install changes
#: them without changing the version).
_OWN_MODULES = ("sources.py", "checkpoints.py", "params.py", "layers.py", "modelcache.py", "roles.py")


class CachedModule:
    """Stands in for the built module on a cache hit: it carries timm's layer map and nothing else."""

    def __init__(self, timm_layer_map: dict[str, int] | None, timm_layer_count: int) -> None:
        self.timm_layer_map = timm_layer_map
        self.timm_layer_count = timm_layer_count


def cache_dir() -> Path:
    """Where entries live: ``$XDG_CACHE_HOME/lrrules/models``, or ``~/.cache/lrrules/models``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lrrules" / "models"


def is_factory(spec: str) -> bool:
    """Whether ``spec`` names a user's factory (``package.module:factory``), not a library's model."""
    return bool(re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", spec)) and not spec.startswith(("hf:", "torchvision:"))


def _version(name: str) -> str | None:
    """``importlib.metadata.version(name)``, read from the ``Version:`` header line: the stdlib parses
    the whole metadata file as an email first, a third of a cached command's time for five libraries."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    for line in text.splitlines():
        if not line:  # the headers end at the first blank line
            break
        if line.startswith("Version:"):
            return line[len("Version:"):].strip()
    return dist.version  # a metadata file of another shape: the stdlib's reading


def _files(spec: str) -> list[list[Any]]:
    """Size and modification time of every file the source reads (empty for a library's model)."""
    if spec.startswith("hf:"):
        where = Path(spec[3:])
        folder = where.parent if where.name.endswith(".json") else where
        paths = sorted(folder.iterdir()) if folder.is_dir() else [where]
    elif spec.lower().endswith((".safetensors", ".safetensors.index.json", ".pt", ".pth", ".bin")):
        path = Path(spec)
        # A sharded index names its shards beside it: any file there may be one of them.
        paths = sorted(path.parent.iterdir()) if spec.lower().endswith(".index.json") and path.parent.is_dir() else [path]
    else:
        return []
    out = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            out.append([str(p.resolve()), None, None])
            continue
        out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return out


def cache_key(spec: str, num_classes: int | None, model_args: Mapping[str, Any]) -> str:
    """The text that names an entry: everything that could change what ``spec`` yields."""
    here = Path(__file__).parent
    own = hashlib.sha256(b"".join((here / m).read_bytes() for m in _OWN_MODULES if (here / m).is_file())).hexdigest()
    return json.dumps({
        "format": FORMAT, "spec": spec, "num_classes": num_classes, "model_args": dict(model_args),
        "cwd": os.getcwd() if is_factory(spec) else None, "python": platform.python_version(),
        "libraries": {name: _version(name) for name in _LIBRARIES}, "lrrules_code": own, "files": _files(spec),
    }, sort_keys=True, default=repr)


def _entry_path(key: str) -> Path:
    return cache_dir() / (hashlib.sha256(key.encode()).hexdigest() + ".json")


def reads_as_fast(spec: str) -> bool:
    """Whether ``spec`` is a safetensors checkpoint (a file or a sharded index): its header is read
    as fast as an entry would be, in a fraction of the memory, so it is not cached."""
    return spec.lower().endswith((".safetensors", ".safetensors.index.json"))


def cached_open_model(spec: str, num_classes: int | None = None, model_args: Mapping[str, Any] | None = None,
                      use_cache: bool = True, cache_factory: bool = False) -> Any:
    """:func:`lrrules.sources.open_model`, answered from the cache where an entry for the same key exists.

    ``use_cache=False`` neither reads nor writes the cache; a user's factory is cached only with
    ``cache_factory=True``. On a hit the model's ``module`` is a :class:`CachedModule` and it has no
    tensors (the command line needs neither).
    """
    from .sources import Model, open_model

    args = dict(model_args or {})
    if not use_cache or (is_factory(spec) and not cache_factory) or reads_as_fast(spec):
        return open_model(spec, num_classes, args)
    key = cache_key(spec, num_classes, args)
    path = _entry_path(key)
    found = _read(path, key)
    if found is not None:
        label, params, ordered, layer_map, count = found
        module = CachedModule(layer_map, count) if layer_map is not None else None  # None: a checkpoint
        return Model(label, params, module, [], ordered)
    model = open_model(spec, num_classes, args)
    _write(path, key, model)
    return model


def _read(path: Path, key: str) -> tuple[str, list[ParamInfo], bool, dict[str, int] | None, int] | None:
    """The entry at ``path``, or ``None`` when there is none or it cannot be trusted."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["key"] != key:  # a hash collision or a file put there by hand: not ours
            return None
        params = []
        for i, (name, shape, module, grad, aliases, bases, attrs, owners, roles) in enumerate(data["params"]):
            if not (isinstance(name, str) and all(isinstance(d, int) for d in shape) and isinstance(grad, bool)
                    and (module is None or isinstance(module, str))
                    and all(isinstance(a, str) for a in (*aliases, *bases))
                    and all(isinstance(k, str) and isinstance(v, (int, float, str, bool)) for k, v in attrs)
                    and all(isinstance(m, str) and all(isinstance(b, str) for b in kinds)
                            and all(isinstance(k, str) and isinstance(v, (int, float, str, bool)) for k, v in held)
                            for m, kinds, held in owners)
                    and all(isinstance(r, str) and isinstance(why, str) for r, why in roles)):
                return None
            params.append(ParamInfo(name, tuple(shape), module, grad, i, tuple(aliases), tuple(bases),
                                    tuple((k, v) for k, v in attrs),
                                    tuple((m, tuple(kinds), tuple((k, v) for k, v in held)) for m, kinds, held in owners),
                                    tuple((r, why) for r, why in roles)))
        layer_map = data["timm_layers"]
        count = data["timm_layer_count"]
        if not params or not isinstance(data["label"], str) or not isinstance(data["ordered"], bool) \
                or not isinstance(count, int) or not (layer_map is None or isinstance(layer_map, dict)):
            return None
        return data["label"], params, data["ordered"], layer_map, count
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(path: Path, key: str, model: Any) -> None:
    layer_map: dict[str, int] | None = None
    count = 0
    if model.module is not None:
        from .layers import by_timm

        try:
            layers, count = by_timm(model.params, model.module)
        except Exception:  # noqa: BLE001  timm cannot map this model: it is not cached, built every time
            return
        layer_map = {p.name: layer for p, layer in zip(model.params, layers)}
    data = {"key": key, "label": model.label, "ordered": model.ordered, "timm_layers": layer_map,
            "timm_layer_count": count,
            "params": [[p.name, list(p.shape), p.module, p.requires_grad, list(p.aliases), list(p.bases),
                        [list(pair) for pair in p.attrs],
                        [[m, list(kinds), [list(pair) for pair in held]] for m, kinds, held in p.alias_modules],
                        [list(pair) for pair in p.roles]]
                       for p in model.params]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(data), encoding="utf-8")
        os.replace(partial, path)  # readers see the old entry or the whole new one, never half
    except OSError as exc:
        warnings.warn(f"lrrules: cannot write the model cache in {path.parent} ({exc}); "
                      "the model is built again next time (--no-cache skips the cache)", stacklevel=2)


def check_optimizer_cached(rules: Any, use_cache: bool = True) -> None:
    """:func:`lrrules.optim.check_optimizers` on ``rules`` (each optimizer it names), skipped where the same rule set passed it
    before under the same library versions and the same lrrules code (a pass is remembered, a failure
    never is: its message is made again each time). Checking imports torch, which a cached model spares.

    >>> check_optimizer_cached(lrrules.load("rules.yaml"))          # doctest: +SKIP
    """
    # Imported only where a check runs: a remembered pass must not pay for the optimizer code.
    if not use_cache:
        from .optim import check_optimizers

        check_optimizers(rules)
        return
    here = Path(__file__).parent
    key = json.dumps({"format": FORMAT, "rules": rules.model_dump_json(round_trip=True),
                      "python": platform.python_version(),
                      "libraries": {name: _version(name) for name in _LIBRARIES},
                      "optim": hashlib.sha256((here / "optim.py").read_bytes()).hexdigest()}, sort_keys=True)
    marker = cache_dir().parent / "optimizer-checks" / hashlib.sha256(key.encode()).hexdigest()
    try:
        if marker.read_text(encoding="utf-8") == key:
            return
    except (OSError, ValueError):
        pass
    from .optim import check_optimizers

    check_optimizers(rules)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        partial = marker.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(key, encoding="utf-8")
        os.replace(partial, marker)
    except OSError as exc:
        warnings.warn(f"lrrules: cannot write the cache in {marker.parent} ({exc})", stacklevel=2)
