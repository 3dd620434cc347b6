"""The public surface: every name of ``lrrules.__all__`` is there, the object its module defines, though
the optimizer code is imported only when first used."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import lrrules

HOMES = {"Built": "optim", "build": "optim", "build_optimizer": "optim", "Plan": "plan",
         "load_optimizer_state": "resume", "resolve": "resolver", "resolve_names": "sources", "rule_scheduler": "schedules",
         "RuleSet": "language", "load": "loader", "loads": "loader", "LrrulesError": "errors",
         "PlanProblemsError": "errors", "ResumeError": "errors", "RuleError": "errors", "RuleFileError": "errors",
         "Finding": "check", "check": "check", "bind": "distributed", "from_optimizer": "capture"}


def test_every_public_name_is_the_object_its_module_defines() -> None:
    assert sorted(lrrules.__all__) == sorted(HOMES)
    for name, module in HOMES.items():
        assert getattr(lrrules, name) is getattr(importlib.import_module(f"lrrules.{module}"), name), name
    assert set(lrrules.__all__) <= set(dir(lrrules))


def test_star_import_gives_every_public_name_and_an_unknown_name_is_an_attribute_error() -> None:
    space: dict[str, object] = {}
    exec("from lrrules import *", space)
    assert set(HOMES) <= set(space)
    with pytest.raises(AttributeError, match="bulid"):
        lrrules.bulid  # noqa: B018


def test_importing_lrrules_and_loading_a_file_leave_the_optimizer_code_unimported() -> None:
    code = ("import sys, lrrules\nlrrules.loads('version: 1\\ndefaults: {lr: 0.1}\\n')\n"
            "print(sorted(m for m in ('lrrules.optim', 'lrrules.resume', 'lrrules.optimizer_table', 'torch') "
            "if m in sys.modules))\n"
            "lrrules.build\nprint('lrrules.optim' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"]


def test_resolve_takes_what_load_opens_as_build_does() -> None:
    """``lrrules.resolve`` and ``lrrules.build`` take a spec or a RuleSet alike: a preset by name here."""
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    by_name = lrrules.resolve("lrrules:no-decay-1d", model)
    loaded = lrrules.resolve(lrrules.load("lrrules:no-decay-1d"), model)
    assert by_name.params == loaded.params and by_name.groups == loaded.groups
    assert {a.name for a in by_name.params if a.weight_decay == 0} == {"0.bias", "1.weight", "1.bias", "2.bias"}
    _, built = lrrules.build("lrrules:no-decay-1d", model)
    assert built.groups == by_name.groups
