"""Importers: a peer's configuration (MMEngine, timm, a first-match regex list, Hugging Face, Axolotl)
as a rule file, verified against the groups the peer's own code builds.

Each format is a module with ``read(path) -> config``, ``rules(config, model) -> str`` (the rule
file's text) and ``peer(config, model)`` (the peer's own optimizer or param groups).
"""

from __future__ import annotations

import importlib
from types import ModuleType

FORMATS = {"mmengine": "mmengine", "timm": "timm_args", "regex-list": "regex_list", "hf": "hf", "axolotl": "axolotl"}


def importer(name: str) -> ModuleType:
    """The module of format ``name``."""
    return importlib.import_module(f".{FORMATS[name]}", __name__)
