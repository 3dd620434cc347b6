"""Issue 21, numbers that mean something else downstream: a lr that rounds to 0 (a frozen tensor in
disguise) and option keys that schedulers and lrrules own."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lrrules
from lrrules.cli import main
from lrrules.errors import RuleFileError
from lrrules.vocabulary import RESERVED_OPTIONS
from lrrules.params import ParamInfo
from lrrules.resolver import resolve_params

PARAMS = [ParamInfo(f"p{i}", (2,), None, True, i) for i in range(40)]


def _plan(text: str) -> lrrules.Plan:
    return resolve_params(lrrules.loads(text, path="r.yaml"), PARAMS)



@settings(max_examples=40, deadline=None)
@given(decay=st.floats(1e-3, 0.999), stretch=st.integers(1, 400))
def test_layer_decay_that_rounds_to_zero_is_said_and_only_there(decay: float, stretch: int) -> None:
    plan = _plan(f"version: 1\ndefaults: {{lr: 1.0}}\nlayers: {{by: tensor}}\nrules:\n"
                 f"  - {{name: decay, match: '*', lr_mult: '{decay!r} ** (depth * {stretch})'}}\n")
    # By hand: depth of p{i} is 39 - i; the multiplier is a float power, 0 where it rounds off.
    want = {f"p{i}" for i in range(40) if math.pow(decay, (39 - i) * stretch) == 0.0}
    groups = {g.name: set(g.params) for g in plan.groups}
    got = set().union(*(groups[name] for name in groups if any(f"group '{name}'" in c for c in plan.cautions)))
    assert got == want
    assert not set(plan.zero_lr) & want  # said once, as what it is


@settings(max_examples=40, deadline=None)
@given(a=st.floats(1e-300, 1.0), b=st.floats(1e-300, 1.0))
def test_a_product_of_nonzero_multipliers_that_rounds_to_zero_is_said(a: float, b: float) -> None:
    plan = _plan(f"version: 1\ndefaults: {{lr: 1.0}}\nrules:\n  - {{name: all, match: '*', lr: {a!r}}}\n"
                 f"modifiers:\n  - {{name: small, match: '*', lr_mult: {b!r}}}\n")
    rounded = a * b == 0.0
    assert any("rounds to 0" in c and "a frozen tensor in disguise" in c for c in plan.cautions) == rounded
    assert plan.zero_lr == ()


@pytest.mark.parametrize("setting", ["lr: 0", "lr_mult: 0", "lr_mult: '0 if depth > 2 else 1'", "lr: '0 * ndim'"])
def test_a_zero_the_file_wrote_is_meant(setting: str) -> None:
    plan = _plan(f"version: 1\ndefaults: {{lr: 1.0}}\nlayers: {{by: tensor}}\nrules:\n"
                 f"  - {{name: all, match: '*', {setting}}}\n")
    assert not any("rounds to 0" in c for c in plan.cautions)
    assert plan.zero_lr  # still the plain lr = 0 note, as before


def test_check_strict_fails_on_a_rounded_lr_and_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"fc.weight": np.zeros((2, 2), dtype=np.float32), "fc.bias": np.zeros(2, dtype=np.float32)},
              str(tmp_path / "m.safetensors"))
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\ndefaults: {lr: 1e-200}\nrules:\n  - {name: all, match: '*'}\n"
                     "modifiers:\n  - {name: tiny, match: fc.weight, lr_mult: 1e-200}\n")
    argv = ["check", str(rules), "--model", str(tmp_path / "m.safetensors")]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--strict"]) == 1
    out = capsys.readouterr().out
    assert "'fc.weight'" in out and "rounds to 0" in out and "freeze" in out


# --- option keys that others own -------------------------------------------------------------------

PLACES = {
    "rule": "rules:\n  - {{name: a, match: '*', options: {{{key}: {value}}}}}\n",
    "modifier": "rules:\n  - {{name: a, match: '*'}}\nmodifiers:\n  - {{name: m, match: '*', options: {{{key}: {value}}}}}\n",
    "named optimizer": "optimizers:\n  muon: {{type: Muon, {key}: {value}}}\nrules:\n  - {{name: a, match: '*'}}\n",
}


@settings(max_examples=80, deadline=None)
@given(key=st.sampled_from(sorted(set(RESERVED_OPTIONS) - {"lr", "weight_decay"})),
       place=st.sampled_from(sorted(PLACES)), value=st.floats(0, 10, allow_nan=False))
def test_a_key_that_schedulers_or_lrrules_own_is_refused_where_it_stands(key: str, place: str, value: float) -> None:
    text = "version: 1\ndefaults: {lr: 0.1}\n" + PLACES[place].format(key=key, value=value)
    with pytest.raises(RuleFileError) as info:
        lrrules.loads(text, path="r.yaml")
    error = info.value.errors[0]
    line = next(i for i, row in enumerate(text.splitlines(), 1) if f"{key}: {value}" in row)
    assert error.line == line and text.splitlines()[line - 1][error.col - 1:].startswith(key)
    assert f"'{key}' is not an option here: {RESERVED_OPTIONS[key]}" == error.message


@pytest.mark.parametrize("key", ["initial_lr", "lr_scale", "max_lr", "name"])
def test_a_reserved_key_in_defaults_or_group_keys_is_refused(key: str) -> None:
    for text in (f"version: 1\ndefaults: {{lr: 0.1, {key}: 1}}\n",
                 f"version: 1\ndefaults: {{lr: 0.1}}\noptimizers:\n  m: {{type: SGD, group_keys: [{key}]}}\n"):
        with pytest.raises(RuleFileError, match=f"'{key}' is not an option here: "):
            lrrules.loads(text, path="r.yaml")


def test_initial_lr_from_a_file_would_be_what_torch_schedules_from() -> None:
    # Why it is refused: torch's scheduler keeps a group's initial_lr when the group has one.
    import torch

    w = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [w], "lr": 0.1, "initial_lr": 5.0}], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5, last_epoch=0)
    assert scheduler.base_lrs == [5.0]


def test_an_optimizer_option_that_starts_like_a_scheduler_key_is_an_option() -> None:
    rules = lrrules.loads("version: 1\ndefaults: {lr: 0.1}\noptimizer: {type: Adagrad}\nrules:\n"
                          "  - {name: a, match: '*', options: {initial_accumulator_value: 0.1}}\n")
    import torch

    optimizer, _ = lrrules.build(rules, torch.nn.Linear(2, 2))
    assert optimizer.param_groups[0]["initial_accumulator_value"] == 0.1
