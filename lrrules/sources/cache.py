"""A cache of what a command-line model source yields, so that a second ``check``, ``resolve`` or
``explain`` on the same model answers without importing torch or building anything.

An entry is plain JSON in ``$XDG_CACHE_HOME/lrrules/models`` (``~/.cache/lrrules/models``), one file
per key: the parameters (every :class:`~lrrules.params.ParamInfo` field), whether they are in the
model's order, and timm's layer map. The key holds everything that could change the answer: the
source and its arguments, the versions of Python and the model libraries, the code of lrrules'
model-reading modules, and the size and time of every file the source reads. A user's factory is
cached only when asked (its code is not in the key); a safetensors source is never cached.

The folder is a place others may reach: one another user owns, or others can write, is not used (a
warning says so). An entry is read only if it is a regular file of ours (never through a link, never
a FIFO) that starts with the SHA-256 of its own text and holds its own key; it is written to a new
file of a random name (``O_EXCL | O_NOFOLLOW``), synced and renamed over the entry, so a reader sees
the old entry or the whole new one, and a full disk leaves none. A bad entry is rebuilt, never trusted.

>>> model = cached_open_model("resnet18", num_classes=2)        # doctest: +SKIP
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import secrets
import stat
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..params import ParamInfo

if TYPE_CHECKING:
    from ..language import RuleSet
    from . import Model

#: Bumped whenever an entry's layout changes: older entries then miss instead of being misread.
FORMAT = 5
_LIBRARIES = ("lrrules", "torch", "timm", "torchvision", "transformers")
#: lrrules' own modules whose code decides what a source yields (a development install changes them
#: without changing the version).
_OWN_MODULES = ("sources/__init__.py", "sources/checkpoints.py", "sources/cache.py", "params.py", "layers.py",
                "roles.py")
_ROOT = Path(__file__).parent.parent
#: An entry larger than this is not read (an entry of a million tensors is about 100 MB).
MAX_ENTRY = 1 << 30


def cache_dir() -> Path:
    """Where entries live: ``$XDG_CACHE_HOME/lrrules/models``, or ``~/.cache/lrrules/models`` (a
    relative ``XDG_CACHE_HOME`` is ignored, as the XDG Base Directory specification says).

    >>> cache_dir().parts[-2:]
    ('lrrules', 'models')
    """
    base = os.environ.get("XDG_CACHE_HOME", "")
    return Path(base if os.path.isabs(base) else Path.home() / ".cache") / "lrrules" / "models"


def _me() -> int:
    """The user whose cache this is (the effective user id)."""
    return os.geteuid()


_WARNED: set[tuple[Path, str]] = set()


def _open_folder(folder: Path, create: bool) -> int | None:
    """A descriptor of ``folder`` where it and its parent (lrrules' own folder) are directories of
    this user that no one else may write; ``None`` where missing (and not to be created) or unsafe."""
    top = folder.parent  # whoever can write there can replace the folder
    try:
        if create:
            top.parent.mkdir(parents=True, exist_ok=True)
            for level in (top, folder):
                try:
                    os.mkdir(level, 0o700)
                except FileExistsError:
                    pass
        fds: list[int] = []
        try:
            for level in (top, folder):
                fds.append(os.open(level, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
                why = _untrusted(os.fstat(fds[-1]), "folder")
                if why:
                    if (level, why) not in _WARNED:  # once, not at each read and write
                        _WARNED.add((level, why))
                        warnings.warn(f"lrrules: the cache folder {level} {why}; the cache is not used (each model "
                                      "is built again): make it yours alone (chmod 700) or set XDG_CACHE_HOME",
                                      stacklevel=3)
                    return None
            return fds.pop()
        finally:
            for fd in fds:
                os.close(fd)
    except OSError as exc:
        if create or exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            warnings.warn(f"lrrules: cannot use the cache folder {folder} ({exc.strerror or exc}); the model is "
                          "built again next time (--no-cache skips the cache)", stacklevel=3)
        return None


def _untrusted(st: os.stat_result, what: str) -> str:
    """Why a folder or an entry with this status cannot be trusted, or ``""``."""
    if not (stat.S_ISDIR if what == "folder" else stat.S_ISREG)(st.st_mode):
        return "is not a directory" if what == "folder" else "is not a regular file"
    if st.st_uid != _me():
        return f"is owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"can be written by others (mode {stat.S_IMODE(st.st_mode):o})"
    return ""


def read_entry(folder: Path, name: str) -> bytes | None:
    """The bytes of the entry ``name`` in ``folder``, or ``None`` where there is none or it cannot be
    trusted: never through a symbolic link, never a FIFO or another user's file."""
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
        if _untrusted(st, "entry") or st.st_size > MAX_ENTRY:
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


def write_entry(folder: Path, name: str, data: bytes) -> None:
    """Put ``data`` at ``folder/name`` whole or not at all (see the module's docstring); a failure
    leaves no partial file and warns."""
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
        try:
            os.fsync(fd)  # the rename itself survives a crash
        except OSError:
            pass
    except OSError as exc:
        if created:
            try:
                os.unlink(partial, dir_fd=fd)
            except OSError:
                pass
        warnings.warn(f"lrrules: cannot write the cache in {folder} ({exc.strerror or exc}); the model is "
                      "built again next time (--no-cache skips the cache)", stacklevel=3)
    finally:
        os.close(fd)


_SIGNED = b'{"sha256": "'
_AFTER = len(_SIGNED) + 64


def signed(data: dict[str, Any]) -> bytes:
    """``data`` as JSON that starts with the SHA-256 of the rest of its text, which :func:`verified` checks.

    >>> verified(signed({"a": 1}))["a"]
    1
    """
    body = json.dumps(data).encode()[1:]  # after its "{"
    return _SIGNED + hashlib.sha256(body).hexdigest().encode() + b'", ' + body


def verified(raw: bytes | None) -> Any:
    """The JSON ``raw`` holds if its SHA-256 matches the one it starts with, else ``None`` (an entry
    cut short, edited, or not written by lrrules)."""
    if raw is None or not raw.startswith(_SIGNED) or raw[_AFTER:_AFTER + 3] != b'", ':
        return None
    if hashlib.sha256(raw[_AFTER + 3:]).hexdigest().encode() != raw[len(_SIGNED):_AFTER]:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _version(name: str) -> str | None:
    """``importlib.metadata.version(name)``, read from the ``Version:`` line: the stdlib parses the
    whole metadata file as an email first, a third of a cached command's time for five libraries."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    for line in (dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "").splitlines():
        if not line:  # the headers end at the first blank line
            break
        if line.startswith("Version:"):
            return line[len("Version:"):].strip()
    return dist.version


def _files(spec: str, model_args: Mapping[str, Any]) -> list[list[Any]]:
    """Path, size and modification time of every file the source reads (none for a library's model);
    for a Hugging Face hub id, the revision its cache resolves to and its config's SHA-256."""
    if spec.startswith("hf:"):
        where = Path(spec[3:])
        folder = where.parent if where.name.endswith(".json") else where
        if not (folder / "config.json").is_file() and not where.exists():
            return [_hub_revision(spec[3:], model_args.get("revision"))]
        paths = sorted(folder.iterdir()) if folder.is_dir() else [where]
    elif spec.lower().endswith((".pt", ".pth", ".bin")):
        paths = [Path(spec)]
    else:
        return []
    out: list[list[Any]] = []
    for p in paths:
        try:
            st = p.stat()
            out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([str(p.resolve()), None, None])
    return out


def _hub_revision(model_id: str, revision: Any) -> list[Any]:
    """Where transformers reads a hub id's config in the Hugging Face cache: the commit
    ``refs/<revision>`` names (``main`` by default), and that snapshot's config.json's SHA-256."""
    try:
        from huggingface_hub import constants

        hub = Path(constants.HF_HUB_CACHE)
    except ImportError:
        home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
        hub = Path(os.environ.get("HF_HUB_CACHE") or Path(home) / "hub")
    repo = hub / ("models--" + model_id.replace("/", "--"))
    commit = str(revision or "main")
    try:
        commit = (repo / "refs" / commit).read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        pass  # a commit hash itself, or nothing cached
    try:
        digest: str | None = hashlib.sha256((repo / "snapshots" / commit / "config.json").read_bytes()).hexdigest()
    except (OSError, ValueError):
        digest = None
    return ["hub", model_id, commit, digest]


def cache_key(spec: str, num_classes: int | None, model_args: Mapping[str, Any]) -> str:
    """The text that names an entry: everything that could change what ``spec`` yields."""
    from . import FACTORY

    own = hashlib.sha256(b"".join((_ROOT / m).read_bytes() for m in _OWN_MODULES)).hexdigest()
    return json.dumps({
        "format": FORMAT, "spec": spec, "num_classes": num_classes, "model_args": dict(model_args),
        "cwd": os.getcwd() if FACTORY.fullmatch(spec) else None, "python": platform.python_version(),
        "libraries": {name: _version(name) for name in _LIBRARIES}, "lrrules_code": own,
        "files": _files(spec, model_args),
    }, sort_keys=True, default=repr)


def _entry_name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest() + ".json"


def cached_open_model(spec: str, num_classes: int | None = None, model_args: Mapping[str, Any] | None = None,
                      use_cache: bool = True, cache_factory: bool = False) -> Model:
    """:func:`lrrules.sources.open_model`, answered from the cache where an entry for the same key
    exists; then ``module`` is a :class:`~lrrules.sources.TimmLayerMap` (``None`` for a checkpoint)
    and there are no tensors. ``use_cache=False`` neither reads nor writes the cache.
    """
    from . import FACTORY, Model, TimmLayerMap, open_model
    from .checkpoints import is_distributed_checkpoint
    from .names import CHECKPOINTS

    args = dict(model_args or {})
    factory = FACTORY.fullmatch(spec) and not spec.startswith(("hf:", "torchvision:"))
    # A safetensors header (or a torch.distributed.checkpoint's .metadata) reads as fast as an entry.
    fast = spec.lower().endswith(CHECKPOINTS[:2]) or is_distributed_checkpoint(Path(spec))
    if not use_cache or (factory and not cache_factory) or fast:
        return open_model(spec, num_classes, args)
    key = cache_key(spec, num_classes, args)
    found = _read(key)
    if found is not None:
        label, params, ordered, layers = found
        return Model(label, params, None if layers is None else TimmLayerMap(*layers), [], ordered)
    model = open_model(spec, num_classes, args)
    _write(key, model)
    return model


def _read(key: str) -> tuple[str, list[ParamInfo], bool, tuple[dict[str, int], int] | None] | None:
    """The entry for ``key`` (label, parameters, ordered, timm's layer map and count), or ``None``
    when there is none or it cannot be trusted."""
    try:
        data = verified(read_entry(cache_dir(), _entry_name(key)))
        if data["key"] != key:  # a hash collision or a file put there by hand: not ours
            return None
        params = []
        for i, (name, shape, module, grad, aliases, bases, attrs, owners, roles) in enumerate(data["params"]):
            if not (isinstance(name, str) and all(type(d) is int for d in shape) and isinstance(grad, bool)
                    and (module is None or isinstance(module, str)) and _strings(*aliases, *bases)
                    and _plain(attrs) and all(_strings(m, *kinds) and _plain(held) for m, kinds, held in owners)
                    and all(_strings(r, why) for r, why in roles)):
                return None
            params.append(ParamInfo(name, tuple(shape), module, grad, i, tuple(aliases), tuple(bases), _pairs(attrs),
                                    tuple((m, tuple(kinds), _pairs(held)) for m, kinds, held in owners), _pairs(roles)))
        layers, count, label, ordered = data["timm_layers"], data["timm_layer_count"], data["label"], data["ordered"]
        if not (params and isinstance(label, str) and isinstance(ordered, bool) and type(count) is int
                and (layers is None or isinstance(layers, dict) and all(type(v) is int for v in layers.values()))):
            return None
        return label, params, ordered, None if layers is None else (layers, count)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _strings(*values: Any) -> bool:
    return all(isinstance(v, str) for v in values)


def _plain(pairs: Any) -> bool:
    """Whether an entry's module attributes are ``[name, value]`` pairs of plain values, as written."""
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
    rows = [[p.name, list(p.shape), p.module, p.requires_grad, list(p.aliases), list(p.bases), p.attrs,
             [[m, kinds, held] for m, kinds, held in p.alias_modules], p.roles] for p in model.params]
    data = {"key": key, "label": model.label, "ordered": model.ordered, "timm_layers": layer_map,
            "timm_layer_count": count, "params": rows}
    write_entry(cache_dir(), _entry_name(key), signed(data))


def check_optimizer_cached(rules: RuleSet, use_cache: bool = True) -> None:
    """:func:`lrrules.optim.check_optimizers` on ``rules``, skipped where the same rule set passed it
    before under the same library versions and optimizer code (a pass is remembered, never a
    failure). Checking imports torch, which a cached model spares.

    >>> check_optimizer_cached(lrrules.load("rules.yaml"))          # doctest: +SKIP
    """
    if not use_cache:
        from ..optim import check_optimizers

        check_optimizers(rules)
        return
    key = json.dumps({"format": FORMAT, "rules": rules.model_dump_json(round_trip=True),
                      "python": platform.python_version(), "libraries": {name: _version(name) for name in _LIBRARIES},
                      "optim": hashlib.sha256((_ROOT / "optim.py").read_bytes()).hexdigest()}, sort_keys=True)
    folder, name = cache_dir().parent / "optimizer-checks", hashlib.sha256(key.encode()).hexdigest()
    if read_entry(folder, name) != key.encode():
        from ..optim import check_optimizers  # only where a check runs: a remembered pass needs none of it

        check_optimizers(rules)
        write_entry(folder, name, key.encode())
