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

The cache is a place others may reach: a folder another user owns, or that others can write, is
not used at all (with a warning), so an entry planted there with the right key cannot change the
groups. An entry is read only if it is a regular file of ours (never through a symbolic link, never
a FIFO) whose SHA-256 of its own text matches the one it starts with; it is written to a new file of
a random name in the folder (``O_EXCL | O_NOFOLLOW``), synced to disk and renamed over the entry,
so a reader sees the old entry or the whole new one, never half, whichever process wins, and a
full disk leaves no entry at all. Nothing outside the cache folder is opened for writing.

>>> model = cached_open_model("resnet18", num_classes=2)        # doctest: +SKIP
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import re
import secrets
import stat
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from .params import ParamInfo

#: Bumped whenever an entry's layout changes: older entries then miss instead of being misread.
FORMAT = 5  # 2: the owning modules' plain attributes (for where: conditions); 3: the entry's own SHA-256;
           # 4: each tensor's roles; 5: the owner of each name of a tied tensor
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
    """Where entries live: ``$XDG_CACHE_HOME/lrrules/models``, or ``~/.cache/lrrules/models``; a relative
    ``XDG_CACHE_HOME`` is ignored, as the XDG Base Directory specification says."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = str(Path.home() / ".cache")
    return Path(base) / "lrrules" / "models"


def _me() -> int:
    """The user whose cache this is (the effective user id)."""
    return os.geteuid()


#: An entry larger than this is not read (a cache entry of a million tensors is about 100 MB).
MAX_ENTRY = 1 << 30


_WARNED: set[tuple[Path, str]] = set()


def _open_folder(folder: Path, create: bool) -> int | None:
    """A descriptor of ``folder`` (and its parent, lrrules' own folder) where both are ours: a directory
    owned by this user that no one else may write. ``None`` where it is missing and not to be created,
    or cannot be made; a folder that is not safe is not used, with a warning saying why."""
    top = folder.parent  # $XDG_CACHE_HOME/lrrules: whoever can write there can replace the folder
    try:
        if create:
            top.parent.mkdir(parents=True, exist_ok=True)
            for level in (top, folder):
                try:
                    os.mkdir(level, 0o700)
                except FileExistsError:
                    pass
        fds = []
        try:
            for level in (top, folder):
                fd = os.open(level, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                fds.append(fd)
                why = _untrusted(os.fstat(fd), "folder")
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
    if what == "folder" and not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if what == "entry" and not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != _me():
        return f"is owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"can be written by others (mode {stat.S_IMODE(st.st_mode):o})"
    return ""


def read_entry(folder: Path, name: str) -> bytes | None:
    """The bytes of the entry ``name`` in ``folder``, or ``None`` where there is none or it cannot be
    trusted (see :func:`_open_folder`): never through a symbolic link, never a FIFO or another user's file."""
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
    """Put ``data`` at ``folder/name`` whole or not at all: written to a new file of a random name
    (``O_EXCL | O_NOFOLLOW``: nothing planted there is followed), synced, and renamed over the entry.
    A failure (a full disk, a folder not ours) leaves no partial file and warns."""
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


#: An entry starts with the SHA-256 of the rest of its text: ``{"sha256": "<64 hex>", "key": ...}``.
_SIGNED = b'{"sha256": "'
_AFTER = len(_SIGNED) + 64


def signed(data: dict[str, Any]) -> bytes:
    """``data`` as JSON that starts with the SHA-256 of its own text, which :func:`verified` checks."""
    body = json.dumps(data).encode()[1:]  # after its "{"
    return _SIGNED + hashlib.sha256(body).hexdigest().encode() + b'", ' + body


def verified(raw: bytes | None) -> Any:
    """The JSON ``raw`` holds if its SHA-256 matches the one it starts with, else ``None`` (an entry cut
    short, edited, or not written by lrrules)."""
    if raw is None or not raw.startswith(_SIGNED) or raw[_AFTER:_AFTER + 3] != b'", ':
        return None
    if hashlib.sha256(raw[_AFTER + 3:]).hexdigest().encode() != raw[len(_SIGNED):_AFTER]:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


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


def _files(spec: str, model_args: Mapping[str, Any]) -> list[list[Any]]:
    """Size and modification time of every file the source reads (empty for a library's model); for a
    Hugging Face hub id, the revision its cache resolves to and its config's SHA-256."""
    if spec.startswith("hf:"):
        where = Path(spec[3:])
        folder = where.parent if where.name.endswith(".json") else where
        if not (folder / "config.json").is_file() and not where.exists():
            return [_hub_revision(spec[3:], model_args.get("revision"))]
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


def _hub_revision(model_id: str, revision: Any) -> list[Any]:
    """What a hub id's config is read from in the Hugging Face cache, as transformers finds it there:
    the commit ``refs/<revision>`` names (``main`` by default), and the SHA-256 of that snapshot's
    config.json (``None`` where it is not cached). A new revision fetched into the cache is another key."""
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
    here = Path(__file__).parent
    own = hashlib.sha256(b"".join((here / m).read_bytes() for m in _OWN_MODULES if (here / m).is_file())).hexdigest()
    return json.dumps({
        "format": FORMAT, "spec": spec, "num_classes": num_classes, "model_args": dict(model_args),
        "cwd": os.getcwd() if is_factory(spec) else None, "python": platform.python_version(),
        "libraries": {name: _version(name) for name in _LIBRARIES}, "lrrules_code": own, "files": _files(spec, model_args),
    }, sort_keys=True, default=repr)


def _entry_name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest() + ".json"


def reads_as_fast(spec: str) -> bool:
    """Whether ``spec`` is a safetensors checkpoint (a file or a sharded index) or a
    torch.distributed.checkpoint folder: its header is read as fast as an entry would be, in a
    fraction of the memory, so it is not cached."""
    from .checkpoints import is_distributed_checkpoint

    # A torch.distributed.checkpoint folder's .metadata is small too, and its files are not in the key.
    return spec.lower().endswith((".safetensors", ".safetensors.index.json")) or is_distributed_checkpoint(Path(spec))


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
    found = _read(key)
    if found is not None:
        label, params, ordered, layer_map, count = found
        module = CachedModule(layer_map, count) if layer_map is not None else None  # None: a checkpoint
        return Model(label, params, module, [], ordered)
    model = open_model(spec, num_classes, args)
    _write(key, model)
    return model


def _read(key: str) -> tuple[str, list[ParamInfo], bool, dict[str, int] | None, int] | None:
    """The entry for ``key``, or ``None`` when there is none or it cannot be trusted."""
    try:
        data = verified(read_entry(cache_dir(), _entry_name(key)))
        if data["key"] != key:  # a hash collision or a file put there by hand: not ours
            return None
        params = []
        for i, (name, shape, module, grad, aliases, bases, attrs, owners, roles) in enumerate(data["params"]):
            if not (isinstance(name, str) and all(isinstance(d, int) for d in shape) and isinstance(grad, bool)
                    and (module is None or isinstance(module, str))
                    and all(isinstance(a, str) for a in (*aliases, *bases))
                    and _plain_attrs(attrs)
                    and all(isinstance(m, str) and all(isinstance(b, str) for b in kinds) and _plain_attrs(held)
                            for m, kinds, held in owners)
                    and all(isinstance(r, str) and isinstance(why, str) for r, why in roles)):
                return None
            params.append(ParamInfo(name, tuple(shape), module, grad, i, tuple(aliases), tuple(bases),
                                    _pairs(attrs), tuple((m, tuple(kinds), _pairs(held)) for m, kinds, held in owners),
                                    _pairs(roles)))
        layer_map = data["timm_layers"]
        count = data["timm_layer_count"]
        if not params or not isinstance(data["label"], str) or not isinstance(data["ordered"], bool) \
                or not isinstance(count, int) or not (layer_map is None or isinstance(layer_map, dict)):
            return None
        return data["label"], params, data["ordered"], layer_map, count
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _plain_attrs(pairs: Any) -> bool:
    """Whether an entry's module attributes are ``[name, value]`` pairs of plain values, as written."""
    return all(isinstance(k, str) and isinstance(v, (int, float, str, bool)) for k, v in pairs)


def _pairs(pairs: Any) -> tuple[tuple[Any, Any], ...]:
    return tuple((k, v) for k, v in pairs)


def _write(key: str, model: Any) -> None:
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
    write_entry(cache_dir(), _entry_name(key), signed(data))


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
    folder, name = cache_dir().parent / "optimizer-checks", hashlib.sha256(key.encode()).hexdigest()
    if read_entry(folder, name) == key.encode():
        return
    from .optim import check_optimizers

    check_optimizers(rules)
    write_entry(folder, name, key.encode())
