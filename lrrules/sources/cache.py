"""A cache of what a command-line model source yields, so that a second ``check`` on the same model
builds nothing and imports no torch: signed JSON in ``$XDG_CACHE_HOME/lrrules/models``, under a key
of all that could change it (the source and its arguments, library versions, lrrules' model code,
each file read). A user's factory is cached only when asked; safetensors sources never.

Others may reach the folder: one another user owns or others can write is not used; an entry is
read only as a regular file of ours (no link, no FIFO) whose SHA-256 it starts with matches, and is
written to a new file (``O_EXCL | O_NOFOLLOW``), synced and renamed over the old: never half read."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import secrets
import stat
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..params import ParamInfo
from ..signatures import installed

if TYPE_CHECKING:
    from ..language import RuleSet
    from ..plan import Plan
    from . import Model

FORMAT = 5  # bumped whenever an entry's layout changes: older entries then miss instead of being misread
_LIBRARIES = ("lrrules", "torch", "timm", "torchvision", "transformers")
#: lrrules' code that decides what a source yields (a development install changes it, not the version).
_OWN_MODULES = ("sources/__init__.py", "sources/checkpoints.py", "sources/cache.py", "params.py", "layers.py",
                "roles.py")
_ROOT = Path(__file__).parent.parent
MAX_ENTRY = 1 << 30  # an entry larger than this is not read (a million tensors take about 100 MB)
_WARNED: set[tuple[Path, str]] = set()


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lrrules/models``, else ``~/.cache/lrrules/models`` (a relative
    ``XDG_CACHE_HOME`` is ignored, as the XDG Base Directory specification says).

    >>> cache_dir().parts[-2:]
    ('lrrules', 'models')
    """
    base = os.environ.get("XDG_CACHE_HOME", "")
    return Path(base if os.path.isabs(base) else Path.home() / ".cache") / "lrrules" / "models"


def _me() -> int:  # the user whose cache this is
    return os.geteuid()


def _untrusted(st: os.stat_result, folder: bool) -> str:
    """Why a folder or an entry with this status cannot be trusted, or ``""``."""
    if not (stat.S_ISDIR if folder else stat.S_ISREG)(st.st_mode):
        return "is not a directory" if folder else "is not a regular file"
    if st.st_uid != _me():
        return f"is owned by another user (uid {st.st_uid})"
    return f"can be written by others (mode {stat.S_IMODE(st.st_mode):o})" if st.st_mode & 0o022 else ""


def _open_folder(folder: Path, create: bool) -> int | None:
    """A descriptor of ``folder`` where it and lrrules' folder above it are directories of ours
    that no one else may write; else ``None``, with a warning (once) if unsafe."""
    try:
        if create:
            folder.parent.parent.mkdir(parents=True, exist_ok=True)
            for level in (folder.parent, folder):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(level, 0o700)
        fd = -1
        for level in (folder.parent, folder):
            if fd >= 0:
                os.close(fd)
            fd = os.open(level, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            why = _untrusted(os.fstat(fd), folder=True)
            if why:
                os.close(fd)
                if (level, why) not in _WARNED:  # once, not at each read and write
                    _WARNED.add((level, why))
                    warnings.warn(f"lrrules: the cache folder {level} {why}; the cache is not used (each model is "
                                  "built again): make it yours alone (chmod 700) or set XDG_CACHE_HOME", stacklevel=3)
                return None
        return fd
    except OSError as exc:
        if create or exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            warnings.warn(f"lrrules: cannot use the cache folder {folder} ({exc.strerror or exc}); the model is "
                          "built again next time (--no-cache skips the cache)", stacklevel=3)
        return None


def _read_entry(folder: Path, name: str) -> bytes | None:
    """The bytes of entry ``name`` in ``folder``, or ``None`` where there is none or it is not to be trusted."""
    fd = _open_folder(folder, create=False)
    if fd is None:
        return None
    try:
        entry = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
    except OSError:  # missing, a symbolic link (ELOOP), unreadable
        os.close(fd)
        return None
    try:
        st = os.fstat(entry)
        if _untrusted(st, folder=False) or st.st_size > MAX_ENTRY:
            return None
        chunks = []
        while chunk := os.read(entry, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(entry)
        os.close(fd)


def _write_entry(folder: Path, name: str, data: bytes) -> None:
    """Put ``data`` at ``folder/name`` whole or not at all; a failure (a full disk) warns and leaves no file."""
    fd = _open_folder(folder, create=True)
    if fd is None:
        return
    partial = f".{name}.{secrets.token_hex(8)}.tmp"
    created = False  # whatever else is found at that name is not ours to remove
    try:
        out = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
        created = True
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(out, view):]
            os.fsync(out)
        finally:
            os.close(out)
        os.replace(partial, name, src_dir_fd=fd, dst_dir_fd=fd)  # readers see the old entry or the new one
        with contextlib.suppress(OSError):
            os.fsync(fd)  # the rename itself survives a crash
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                os.unlink(partial, dir_fd=fd)
        warnings.warn(f"lrrules: cannot write the cache in {folder} ({exc.strerror or exc}); the model is "
                      "built again next time (--no-cache skips the cache)", stacklevel=3)
    finally:
        os.close(fd)


_SIGNED = b'{"sha256": "'
_AFTER = len(_SIGNED) + 64


def _signed(data: dict[str, Any]) -> bytes:
    """``data`` as JSON that starts with the SHA-256 of the rest of its text.

    >>> _verified(_signed({"a": 1}))["a"], _verified(_signed({"a": 1}).replace(b"1", b"2"))
    (1, None)
    """
    body = json.dumps(data).encode()[1:]  # after its "{"
    return _SIGNED + hashlib.sha256(body).hexdigest().encode() + b'", ' + body


def _verified(raw: bytes | None) -> Any:
    """The JSON ``raw`` holds if it matches the SHA-256 it starts with, else ``None`` (cut short, edited)."""
    if raw is None or not raw.startswith(_SIGNED) or raw[_AFTER:_AFTER + 3] != b'", ' \
            or hashlib.sha256(raw[_AFTER + 3:]).hexdigest().encode() != raw[len(_SIGNED):_AFTER]:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _files(spec: str, model_args: Mapping[str, Any]) -> list[list[Any]]:
    """Path, size and time of each file the source reads; for a hub id, its cached commit and config's SHA-256."""
    if spec.startswith("hf:"):
        where = Path(spec[3:])
        folder = where.parent if where.name.endswith(".json") else where
        if not (folder / "config.json").is_file() and not where.exists():
            return [_hub_revision(spec[3:], model_args.get("revision"))]
        paths = sorted(folder.iterdir()) if folder.is_dir() else [where]
    else:
        paths = [Path(spec)] if spec.lower().endswith((".pt", ".pth", ".bin")) else []
    out: list[list[Any]] = []
    for p in paths:
        try:
            st = p.stat()
            out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([str(p.resolve()), None, None])
    return out


def _hub_revision(model_id: str, revision: Any) -> list[Any]:
    try:
        from huggingface_hub import constants
    except ImportError:  # no hub client, so no transformers: the build fails, and nothing is cached
        return ["hub", model_id, None, None]
    repo = Path(constants.HF_HUB_CACHE) / ("models--" + model_id.replace("/", "--"))
    commit, digest = str(revision or "main"), None
    with contextlib.suppress(OSError, ValueError):  # a commit hash itself, or nothing cached
        commit = (repo / "refs" / commit).read_text(encoding="utf-8").strip()
    with contextlib.suppress(OSError, ValueError):
        digest = hashlib.sha256((repo / "snapshots" / commit / "config.json").read_bytes()).hexdigest()
    return ["hub", model_id, commit, digest]


def cache_key(spec: str, num_classes: int | None, model_args: Mapping[str, Any]) -> str:
    """The text that names an entry: everything that could change what ``spec`` yields.

    >>> json.loads(cache_key("resnet18", 2, {}))["num_classes"]
    2
    """
    from . import FACTORY

    own = hashlib.sha256(b"".join((_ROOT / m).read_bytes() for m in _OWN_MODULES)).hexdigest()
    return json.dumps({
        "format": FORMAT, "spec": spec, "num_classes": num_classes, "model_args": dict(model_args),
        "cwd": os.getcwd() if FACTORY.fullmatch(spec) else None, "python": platform.python_version(),
        "libraries": {name: installed(name) for name in _LIBRARIES}, "lrrules_code": own,
        "files": _files(spec, model_args)}, sort_keys=True, default=repr)


def _entry_name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest() + ".json"


def cached_open_model(spec: str, num_classes: int | None = None, model_args: Mapping[str, Any] | None = None,
                      use_cache: bool = True, cache_factory: bool = False, quiet: bool = False) -> Model:
    """:func:`~lrrules.sources.open_model`, answered from the cache where it holds the same key (then
    ``module`` is a :class:`~lrrules.sources.TimmLayerMap` or ``None``, and there are no tensors).
    ``use_cache=False`` neither reads nor writes the cache; ``quiet``: no status line.

    >>> cached_open_model("resnet18", num_classes=2).params[0].name        # doctest: +SKIP
    'conv1.weight'
    """
    from . import FACTORY, Model, TimmLayerMap, open_model
    from .checkpoints import is_distributed_checkpoint
    from .names import CHECKPOINTS

    args = dict(model_args or {})
    factory = FACTORY.fullmatch(spec) and not spec.startswith(("hf:", "torchvision:"))
    fast = spec.lower().endswith(CHECKPOINTS[:2]) or is_distributed_checkpoint(Path(spec))
    if not use_cache or (factory and not cache_factory) or fast:
        return open_model(spec, num_classes, args, quiet)
    key = cache_key(spec, num_classes, args)
    found = _read(key)
    if found is not None:
        label, params, ordered, layers = found
        return Model(label, params, None if layers is None else TimmLayerMap(*layers), [], ordered)
    model = open_model(spec, num_classes, args, quiet)
    _write(key, model)
    return model


def _read(key: str) -> tuple[str, list[ParamInfo], bool, tuple[dict[str, int], int] | None] | None:
    """The entry for ``key`` (label, parameters, order, timm's layer map and count), or ``None`` where
    there is none, or it is not ours, not signed, or not as written."""
    try:
        data = _verified(_read_entry(cache_dir(), _entry_name(key)))
        params = []
        for i, (name, shape, module, grad, aliases, bases, attrs, owners, roles) in enumerate(data["params"]):
            if not (_strings(name, *aliases, *bases) and all(type(d) is int for d in shape) and type(grad) is bool
                    and (module is None or isinstance(module, str)) and _plain(attrs)
                    and all(_strings(m, *kinds) and _plain(held) for m, kinds, held in owners)
                    and all(_strings(r, why) for r, why in roles)):
                return None
            params.append(ParamInfo(name, tuple(shape), module, grad, i, tuple(aliases), tuple(bases), _pairs(attrs),
                                    tuple((m, tuple(kinds), _pairs(held)) for m, kinds, held in owners), _pairs(roles)))
        layers, count, label, ordered = data["timm_layers"], data["timm_layer_count"], data["label"], data["ordered"]
        if not (data["key"] == key and params and isinstance(label, str) and type(ordered) is bool
                and type(count) is int and (layers is None or isinstance(layers, dict)
                                            and all(type(v) is int for v in layers.values()))):
            return None
        return label, params, ordered, None if layers is None else (layers, count)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _strings(*values: Any) -> bool:
    return all(isinstance(v, str) for v in values)


def _plain(pairs: Any) -> bool:
    return all(isinstance(k, str) and isinstance(v, (int, float, str, bool)) for k, v in pairs)


def _pairs(pairs: Any) -> tuple[tuple[Any, Any], ...]:
    return tuple((k, v) for k, v in pairs)


def _write(key: str, model: Model) -> None:
    from . import TimmLayerMap

    layer_map: dict[str, int] | None = None
    count = 0
    if isinstance(model.module, TimmLayerMap):
        layer_map, count = model.module.timm_layer_map, model.module.timm_layer_count
    elif model.module is not None:
        from ..layers import by_timm

        try:
            layers, count = by_timm(model.params, model.module)
        except Exception:  # noqa: BLE001  timm cannot map this model: it is not cached, built every time
            return
        layer_map = {p.name: layer for p, layer in zip(model.params, layers) if layer is not None}
    rows = [[p.name, p.shape, p.module, p.requires_grad, p.aliases, p.bases, p.attrs, p.alias_modules, p.roles]
            for p in model.params]
    _write_entry(cache_dir(), _entry_name(key), _signed({"key": key, "label": model.label, "ordered": model.ordered,
                                                       "timm_layers": layer_map, "timm_layer_count": count,
                                                       "params": rows}))


def check_optimizer_cached(rules: RuleSet, use_cache: bool = True, plan: Plan | None = None) -> None:
    """:func:`lrrules.optim.check_optimizers` on ``rules`` or, given a ``plan``, :func:`~lrrules.optim.judge_groups`
    on its groups, skipped where the same rule set (and groups) passed under the same library versions
    and optimizer code (a pass is remembered, never a failure).

    >>> check_optimizer_cached(lrrules.load("rules.yaml"))          # doctest: +SKIP
    """
    shapes = {} if plan is None else {a.name: list(a.shape) for a in plan.params}
    groups = [] if plan is None else sorted({repr((g.optimizer, g.lr, g.weight_decay, sorted(g.options.items()),
                                                   shapes[g.params[0]])) for g in plan.groups})
    key = json.dumps({"format": FORMAT, "rules": rules.model_dump_json(round_trip=True), "groups": groups,
                      "python": platform.python_version(), "libraries": {name: installed(name) for name in _LIBRARIES},
                      "optim": hashlib.sha256((_ROOT / "optim.py").read_bytes()).hexdigest()}, sort_keys=True)
    folder, name = cache_dir().parent / "optimizer-checks", hashlib.sha256(key.encode()).hexdigest()
    if not use_cache or _read_entry(folder, name) != key.encode():
        from ..optim import check_optimizers, judge_groups  # only where a check runs: a remembered pass needs none

        if plan is None:
            check_optimizers(rules)
        else:  # check() has checked the optimizers alone already: only the groups are new
            judge_groups(rules, plan)
        if use_cache:
            _write_entry(folder, name, key.encode())
