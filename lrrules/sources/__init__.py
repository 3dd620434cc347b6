"""Where a model comes from on the command line, ``--model SPEC``: a timm name (``resnet18``),
``torchvision:NAME``, ``hf:FOLDER`` or ``hf:ORG/NAME`` (a Hugging Face config, local or a hub id's),
``package.module:factory`` (the user's own), or a checkpoint (``.safetensors``, an index, ``.pt``,
a torch.distributed.checkpoint folder: names and shapes only). Models are built on the meta device;
nothing is downloaded but a hub config. No core module imports this wing."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ModelError, did_you_mean
from ..params import ParamInfo, collect
from ..roles import name_roles
from .cache import cached_open_model, check_optimizer_cached
from .checkpoints import clip, is_distributed_checkpoint, read_distributed, read_index, read_safetensors, read_state_dict
from .names import CHECKPOINTS, resolve_names

if TYPE_CHECKING:
    import torch

__all__ = ["Model", "TimmLayerMap", "open_model", "parse_model_args", "cached_open_model", "check_optimizer_cached",
           "resolve_names", "is_distributed_checkpoint", "build", "on_meta"]


@dataclass(frozen=True)
class TimmLayerMap:
    """What ``layers: {by: timm}`` reads from a module, kept in the model cache: each parameter's
    layer and the number of layers."""

    timm_layer_map: dict[str, int]
    timm_layer_count: int


@dataclass(frozen=True)
class Model:
    """A model as the commands see it: its parameters, and its module (or layer map, from the cache)."""

    label: str
    params: list[ParamInfo]
    module: torch.nn.Module | TimmLayerMap | None = None
    tensors: list[Any] = field(default_factory=list, repr=False)
    ordered: bool = True  # False where the parameters are not in the model's order (safetensors)


def parse_model_args(pairs: list[str]) -> dict[str, Any]:
    """``--model-arg`` pairs as keyword arguments, each value read as JSON where it is JSON.

    >>> parse_model_args(["drop_rate=0.1", "global_pool=avg"])
    {'drop_rate': 0.1, 'global_pool': 'avg'}
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ModelError(f"--model-arg takes key=value, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
        except RecursionError:
            raise ModelError(f"--model-arg {key}: the value nests too deeply") from None
    return out


T = TypeVar("T")
#: A user's factory, ``package.module:factory``.
FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def open_model(spec: str, num_classes: int | None = None, model_args: Mapping[str, Any] | None = None,
               quiet: bool = False) -> Model:
    """The model ``spec`` names (see the module's docstring); raises :class:`ModelError` when it cannot.
    A build that takes over a second shows a status line on a terminal's stderr (:func:`status`).

    >>> open_model("resnet18", num_classes=2).params[0].name        # doctest: +SKIP
    'conv1.weight'
    """
    args = _own_args(dict(model_args or {}), num_classes)
    num_classes = args.pop("num_classes", num_classes)
    if spec.lower().endswith(CHECKPOINTS) or is_distributed_checkpoint(Path(spec)):
        with status(f"reading {spec}", quiet):
            return _checkpoint(spec)
    kind = next((k for k in ("hf", "torchvision") if spec.startswith(k + ":")), "factory" if FACTORY.fullmatch(spec)
                else "timm")
    with status(f"building {spec.removeprefix(kind + ':')} ({kind})", quiet):
        if kind == "hf":
            return _built(spec, _huggingface(spec[3:], num_classes, args))
        if kind == "torchvision":
            return _built(spec, _torchvision(spec[len("torchvision:"):], num_classes, args))
        if kind == "factory":
            return _built(spec, _factory(spec, num_classes, args))
        return _built(spec, build(spec, num_classes=num_classes, **args))


#: Seconds a model may take to build before a status line says what is being built.
STATUS_AFTER = 1.0


@contextlib.contextmanager
def status(what: str, quiet: bool = False) -> Iterator[None]:
    """While the block runs past :data:`STATUS_AFTER` seconds, ``what ...`` on stderr, cleared when
    it ends: a cold 70B-shaped config builds for half a minute, which reads as a hang in silence.
    Nothing where ``quiet`` or stderr is not a terminal (a pipe, a log, CI).

    >>> with status("building vit_small (timm)"): model = build("vit_small_patch16_224")  # doctest: +SKIP
    """
    stream = sys.stderr
    if quiet or not stream.isatty():
        yield
        return
    shown = threading.Event()

    def show() -> None:
        stream.write(f"{what} ...")
        stream.flush()
        shown.set()

    timer = threading.Timer(STATUS_AFTER, show)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()  # a line being written is finished before it is cleared
        if shown.is_set():  # blanked, with no cursor code (lrrules prints none: docs/cli.md)
            stream.write("\r" + " " * (len(what) + 4) + "\r")
            stream.flush()


#: --model-arg keys that would load weights: lrrules reads names and shapes and never downloads.
_WEIGHT_ARGS = ("pretrained", "weights", "checkpoint_path", "pretrained_cfg_overlay", "pretrained_model_name_or_path")


def _own_args(args: dict[str, Any], num_classes: int | None) -> dict[str, Any]:
    """``args`` checked for what lrrules sets itself: ``num_classes`` once (from either option), and
    nothing that loads weights (``pretrained=false``, what lrrules does anyway, is dropped)."""
    for key in _WEIGHT_ARGS:
        if key in args:
            if args[key] in (False, None, "", "none", "None"):
                del args[key]
                continue
            raise ModelError(f"--model-arg {key}={args[key]!r}: lrrules never loads or downloads weights (it "
                             "needs only names and shapes); leave it out, or pass a checkpoint file as --model")
    if "local_files_only" in args:  # passed to Hugging Face by lrrules itself, always True
        raise ModelError("--model-arg local_files_only: lrrules always reads Hugging Face configs from local files "
                         "only (it never downloads); leave it out")
    if "num_classes" in args:
        given = args["num_classes"]
        if not isinstance(given, int) or isinstance(given, bool) or given < 0:
            raise ModelError(f"--model-arg num_classes={given!r}: give a whole number >= 0")
        if num_classes is not None and given != num_classes:
            raise ModelError(f"--num-classes {num_classes} and --model-arg num_classes={given} disagree; "
                             "give one of them")
    return args


def _built(label: str, module: torch.nn.Module) -> Model:
    params, tensors = collect(module, label)
    if not params:
        raise ModelError(f"{label}: the model has no parameters, so there is nothing to check rules against")
    return Model(label, params, module, tensors)


def _checkpoint(spec: str) -> Model:
    path, lowered = Path(spec), spec.lower()  # model.SAFETENSORS, MODEL.PT: the extension in any case
    if not is_distributed_checkpoint(path) and not path.is_file():
        raise ModelError(f"{spec}: no such checkpoint file")
    read = (read_distributed if path.is_dir() else read_index if lowered.endswith(".index.json")
            else read_safetensors if lowered.endswith(".safetensors") else read_state_dict)
    named = [(name, shape) for name, shape, is_param in read(path) if is_param]
    if not named:
        raise ModelError(f"{spec}: the checkpoint holds no parameters (only buffers or nothing), so there is "
                         "nothing to check rules against")
    params = [ParamInfo(name, shape, None, True, i, roles=name_roles(name, shape)) for i, (name, shape) in enumerate(named)]
    # safetensors stores tensors sorted by name, not in the model's order; a torch state dict keeps it
    return Model(spec, params, ordered=not lowered.endswith((".safetensors", ".safetensors.index.json")))


def build(name: str, num_classes: int | None = None, **kwargs: Any) -> torch.nn.Module:
    """A timm model by name, ``pretrained=False``, built on the meta device (see :func:`on_meta`).

    >>> build("resnet18", num_classes=2).fc.out_features          # doctest: +SKIP
    2
    """
    import timm

    if not timm.is_model(name):
        raise ModelError(f"'{name}' is not a timm model name{did_you_mean(name, timm.list_models(), n=3)}; "
                         "see timm.list_models()")
    args = {"pretrained": False, **kwargs}
    if num_classes is not None:
        args["num_classes"] = num_classes
    return _meta_built(lambda: timm.create_model(name, **args), f"timm could not build '{name}' with {args}")


def _meta_built(make: Callable[[], torch.nn.Module], failed: str) -> torch.nn.Module:
    """:func:`on_meta` of a library's constructor; its failure a :class:`ModelError`, ``failed: why``."""
    try:
        return on_meta(make)
    except Exception as exc:
        raise ModelError(f"{failed}: {exc}") from None


def _torchvision(name: str, num_classes: int | None, args: dict[str, Any]) -> torch.nn.Module:
    try:
        import torchvision
    except ImportError:
        raise ModelError("torchvision: models need torchvision installed (pip install torchvision)") from None
    names = torchvision.models.list_models()
    if name not in names:
        raise ModelError(f"'{name}' is not a torchvision model{did_you_mean(name, names, n=3)}")
    if num_classes is not None:
        args["num_classes"] = num_classes
    return _meta_built(lambda: torchvision.models.get_model(name, weights=None, **args),
                       f"torchvision could not build '{name}'")


def _huggingface(path: str, num_classes: int | None, args: dict[str, Any]) -> torch.nn.Module:
    try:
        import transformers
    except ImportError:
        raise ModelError("hf: models need transformers: pip install 'lrrules[hf]'") from None
    where = Path(path)
    folder = where.parent if where.name.endswith(".json") else where
    if (folder / "config.json").is_file():
        try:
            config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True, **args)
        except Exception as exc:
            raise ModelError(f"hf:{path}: cannot read the config: {exc}") from None
    elif HUB_ID.fullmatch(path) and not where.exists():
        config = _hub_config(transformers, path, args)
    else:
        raise ModelError(f"hf:{path}: no config.json there; give a local folder with config.json, the file, "
                         "or a Hugging Face hub model id (org/name)")
    architectures = getattr(config, "architectures", None) or []
    if not (isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)):
        raise ModelError(f"{folder / 'config.json'}: 'architectures' must be a list of class names, "
                         f"got {clip(repr(architectures))}")
    if num_classes is not None:
        config.num_labels = num_classes
    model_class = getattr(transformers, architectures[0], None) if architectures else None
    if architectures and not isinstance(model_class, type):
        known = [n for n in dir(transformers) if n[:1].isupper() and n.endswith(("Model", "LMHead", "Classification",
                 "Generation", "LM", "Answering", "Training"))]
        raise ModelError(f"hf:{path}: config.json names architecture '{architectures[0]}', which this "
                         f"transformers ({transformers.__version__}) does not have"
                         f"{did_you_mean(architectures[0], known, n=3)}; fix 'architectures' in config.json, or "
                         "upgrade transformers")
    return _meta_built(lambda: model_class(config) if model_class is not None  # from_config is not annotated
                       else transformers.AutoModel.from_config(config),  # type: ignore[no-untyped-call]
                       f"hf:{path}: transformers could not build the model")


#: A Hugging Face hub model id: ``name`` or ``org/name`` (letters, digits, ``-``, ``_``, ``.``).
HUB_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}")


def _hub_config(transformers: Any, model_id: str, args: dict[str, Any]) -> Any:
    """A hub model's config.json from the local cache, else from the hub; never weights nor remote code."""
    with contextlib.suppress(Exception):  # not cached: ask the hub below
        return transformers.AutoConfig.from_pretrained(model_id, local_files_only=True, trust_remote_code=False,
                                                       **args)
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
                  for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    # Without a network the hub client retries for half a minute: one quick connection says so at once.
    unreachable = "HF_HUB_OFFLINE is set" if offline else _hub_unreachable()
    try:
        if unreachable:
            raise ConnectionError(unreachable)
        return transformers.AutoConfig.from_pretrained(model_id, trust_remote_code=False, **args)
    except Exception as exc:
        reason = unreachable or f"{type(exc).__name__}: {clip(str(exc).splitlines()[0] if str(exc) else '')}"
        raise ModelError(
            f"hf:{model_id}: its config is not in the Hugging Face cache and the hub could not give it "
            f"({reason}); with network, run once to cache config.json (only the config is fetched, never "
            "weights), or give a local folder holding config.json") from None


def _hub_unreachable(timeout: float = 5.0) -> str:
    """Why the Hugging Face hub (``HF_ENDPOINT``) cannot be reached, or ``""`` when it accepts a connection."""
    import socket
    import urllib.parse

    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    try:
        port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return f"no network: {host} cannot be reached ({why})"


def _factory(spec: str, num_classes: int | None, args: dict[str, Any]) -> torch.nn.Module:
    import importlib

    import torch

    module_name, _, attr = spec.partition(":")
    top = module_name.partition(".")[0]
    # A factory is code the user chose to run; the standard library holds none, only callables
    # (os:system, subprocess:run) that would turn --model-arg into a shell command.
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        raise ModelError(f"{spec}: '{top}' is part of Python's standard library, not a model factory; "
                         f"name a function of your own that returns a torch.nn.Module (my_models:build)")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"{spec}: cannot import '{module_name}' from {cwd}: {exc}") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001  the module's own code failed (or exited) while it was imported
        raise ModelError(f"{spec}: importing '{module_name}' failed: {type(exc).__name__}: {exc}") from None
    try:
        factory = getattr(module, attr, None)
    except Exception as exc:  # a module __getattr__ of the user's that raises
        raise ModelError(f"{spec}: reading '{attr}' of '{module_name}' failed: {type(exc).__name__}: {exc}") from None
    if not callable(factory):
        raise ModelError(f"{spec}: '{module_name}' has no callable '{attr}'")
    if num_classes is not None:
        args["num_classes"] = num_classes
    try:  # again on the CPU only where the meta device is what failed: its side effects happen once
        model = on_meta(lambda: factory(**args), retry=meta_failed)
    except SystemExit as exc:  # a factory that calls sys.exit() must not end `check` with its code
        raise ModelError(f"{spec}: the factory exited (sys.exit({exc.code!r})) instead of returning a model") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001  GeneratorExit, a BaseException of the user's own: not a traceback
        raise ModelError(f"{spec}: the factory failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"{spec}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    return model


def on_meta(make: Callable[[], T], retry: Callable[[Exception], bool] = lambda exc: True) -> T:
    """``make()`` on the meta device (no memory for weights), or where that fails and ``retry(error)``
    says so, on the CPU: some constructors compute with their tensors while they build.

    >>> on_meta(lambda: __import__("torch").nn.Linear(2, 3)).weight.device
    device(type='meta')
    """
    import torch

    try:
        with torch.device("meta"):
            return make()
    except ModelError:
        raise
    except Exception as exc:
        if not retry(exc):
            raise
        return make()


def meta_failed(exc: Exception) -> bool:
    """Whether an error is the meta device's (``Tensor.item() cannot be called on meta tensors``,
    ``the 'Meta' backend``), not the user's own ("metadata", "metaclass"): the CPU may then succeed.

    >>> meta_failed(RuntimeError("Tensor.item() cannot be called on meta tensors")), meta_failed(KeyError("metadata"))
    (True, False)
    """
    return re.search(r"(?<![a-z])meta(?![a-z])", str(exc), re.IGNORECASE) is not None
