"""lrrules: per-parameter learning rates and weight decay for fine-tuning, from a checked rule file.

>>> import lrrules
>>> optimizer, plan = lrrules.build("rules.yaml", model)     # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Imported here, not lazily: the function `check` shares its module's name, and a lazy import of
# the module would leave `lrrules.check` the module. check.py imports nothing heavy.
from .check import Finding, check
from .errors import LrrulesError, PlanProblemsError, ResumeError, RuleError, RuleFileError

if TYPE_CHECKING:
    from .capture import from_optimizer
    from .distributed import bind
    from .language import RuleSet
    from .loader import load, loads
    from .optim import Built, build, build_optimizer
    from .plan import Plan
    from .resolver import resolve
    from .resume import load_optimizer_state
    from .schedules import rule_scheduler
    from .sources import resolve_names

__version__ = "0.1.0"

# Imported when first used: the rule language (pydantic models, built at import) only when a file is
# read, so `lrrules --version` and TAB completion skip it; the optimizer code only when one is built.
_LAZY = {
    "Built": "optim", "bind": "distributed", "build": "optim", "build_optimizer": "optim", "from_optimizer": "capture", "Plan": "plan", "RuleSet": "language",
    "load": "loader", "loads": "loader", "load_optimizer_state": "resume", "resolve": "resolver",
    "resolve_names": "sources", "rule_scheduler": "schedules",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lrrules' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = ["Built", "Finding", "LrrulesError", "Plan", "PlanProblemsError", "RuleError", "RuleFileError", "ResumeError",
           "RuleSet", "bind", "build", "build_optimizer", "check", "from_optimizer", "load_optimizer_state", "load", "loads", "resolve",
           "resolve_names", "rule_scheduler"]
