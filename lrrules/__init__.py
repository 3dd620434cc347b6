"""lrrules: per-parameter learning rates and weight decay for fine-tuning, from a checked rule file.

>>> import lrrules
>>> optimizer, plan = lrrules.build("rules.yaml", model)     # doctest: +SKIP
"""

from .errors import LrrulesError, PlanProblemsError, ResumeError, RuleError, RuleFileError
from .language import RuleSet
from .loader import load, loads
from .names import resolve_names
from .optim import Built, build, build_optimizer
from .plan import Plan
from .resume import load_optimizer_state
from .schedules import rule_scheduler

__version__ = "0.1.0"

__all__ = [
    "Built",
    "LrrulesError",
    "Plan",
    "PlanProblemsError",
    "RuleError",
    "RuleFileError",
    "ResumeError",
    "RuleSet",
    "build",
    "build_optimizer",
    "load_optimizer_state",
    "load",
    "loads",
    "resolve_names",
    "rule_scheduler",
]
