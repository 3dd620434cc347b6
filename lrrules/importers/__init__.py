"""Importers: a peer's configuration (MMEngine, timm, a first-match regex list, Hugging Face, Axolotl)
as a rule file, verified against the groups the peer's own code builds.

Each format is a module with ``read(path) -> config``, ``rules(config, model) -> str`` (the rule
file's text) and ``peer(config, model)`` (the peer's own optimizer or param groups).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import UsageError

FORMATS = {"mmengine": "mmengine", "timm": "timm_args", "regex-list": "regex_list", "hf": "hf", "axolotl": "axolotl"}


def importer(name: str) -> ModuleType:
    """The module of format ``name``."""
    return importlib.import_module(f".{FORMATS[name]}", __name__)


def read_mapping(path: str, what: str) -> dict[str, Any]:
    """The YAML or JSON mapping in ``path``, read as the peers read their own files (PyYAML's
    ``safe_load``: YAML 1.1, ``yes`` is true); a file that is not one is a :class:`UsageError` saying
    where and ``what`` was expected."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise UsageError(f"{path}{where}: not YAML or JSON ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected {what}")
    return data
