"""Misuse at training time (issue 21): each a clear LrrulesError before training starts, never an
optimizer that silently trains nothing or steps a tensor twice.

A model still on the meta device (or a plan resolved before ``to_empty``), a stale plan after the
model's parameters were replaced, scheduler step counts that cannot work, a user's attribute named as a
wrapper's part, and a model changed by someone else while lrrules reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import lrrules
from lrrules.cli import main
from lrrules.errors import LrrulesError, ModelError, ResolveError, UsageError
from lrrules.params import collect

from .conftest import TinyNet

BASE = """version: 1
defaults: {lr: 0.01, weight_decay: 0.01}
optimizer: {type: AdamW}
rules:
  - {name: head, match: "fc.*", lr_mult: 10, lr_schedule: "1 if epoch >= 1 else 0.5"}
  - {name: body, fallback: true}
"""
PHASES = """phases:
  - {from_epoch: 0, freeze: "conv1.*"}
"""
RULES = BASE + PHASES


def ruleset() -> Any:
    return lrrules.loads(RULES)


# --- the meta device ---------------------------------------------------------------------------------


def meta_net() -> TinyNet:
    with torch.device("meta"):
        return TinyNet()


@pytest.mark.parametrize("call", ["build", "build_optimizer", "param_groups"])
def test_a_model_on_the_meta_device_gets_no_optimizer(call: str) -> None:
    model = meta_net()
    with pytest.raises(ResolveError, match="meta device") as info:
        if call == "param_groups":
            lrrules.resolve(ruleset(), model).param_groups()
        else:
            getattr(lrrules, call)(ruleset(), model)
    assert "fc.weight" in str(info.value) or "parameter(s)" in str(info.value)


def test_resolving_on_meta_still_works_for_reports() -> None:
    plan = lrrules.resolve(ruleset(), meta_net())
    assert plan.ok and {a.name: a.lr for a in plan.params}["fc.weight"] == pytest.approx(0.1)


def test_a_plan_resolved_before_to_empty_is_refused_and_one_resolved_after_builds() -> None:
    model = meta_net()
    plan = lrrules.resolve(ruleset(), model)
    model.to_empty(device="cpu")
    assert not any(p.is_meta for p in model.parameters())
    with pytest.raises(ResolveError, match="replaced"):
        plan.param_groups()
    with pytest.raises(ResolveError, match="replaced"):
        plan.apply_phase(epoch=0)
    groups = lrrules.resolve(ruleset(), model).param_groups()
    handed = [p for g in groups for p in g["params"]]
    assert {id(p) for p in handed} == {id(p) for p in model.parameters()} and len(handed) == len(set(map(id, handed)))


def test_a_partly_meta_model_names_the_meta_tensors() -> None:
    model = TinyNet()
    with torch.device("meta"):
        model.fc = nn.Linear(8, 2)
    with pytest.raises(ResolveError) as info:
        lrrules.build(ruleset(), model)
    message = str(info.value)
    assert "2 parameter(s) are on the meta device" in message and "fc.weight" in message


# --- a stale plan ------------------------------------------------------------------------------------


def replace_head(model: TinyNet) -> None:
    model.fc = nn.Linear(8, 2)


def replace_a_tensor(model: TinyNet) -> None:
    model.layer1[0].weight = nn.Parameter(torch.zeros_like(model.layer1[0].weight))


def add_a_module(model: TinyNet) -> None:
    model.extra = nn.Linear(2, 2)


@pytest.mark.parametrize("change", [replace_head, replace_a_tensor, add_a_module])
@pytest.mark.parametrize("call", ["apply_phase", "apply_freeze", "param_groups"])
def test_a_stale_plan_refuses_to_touch_or_hand_out_tensors(change: Any, call: str) -> None:
    model = TinyNet()
    freeze = "  - {name: stem, match: 'bn1.*', freeze: true}\n" if call == "apply_freeze" else ""
    plan = lrrules.resolve(lrrules.loads(BASE + freeze + PHASES), model)
    change(model)
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    with pytest.raises(ResolveError, match="after the plan was resolved"):
        if call == "apply_phase":
            plan.apply_phase(epoch=0)
        else:
            getattr(plan, call)()
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before


def test_apply_phase_on_a_current_plan_freezes_what_it_says() -> None:
    model = TinyNet()
    plan = lrrules.resolve(ruleset(), model)
    assert plan.apply_phase(epoch=0) == {"conv1.weight"}
    assert not model.conv1.weight.requires_grad and model.fc.weight.requires_grad


# --- scheduler arguments -----------------------------------------------------------------------------

BAD_COUNTS = [-1, 0, -100, 2.5, 10.0, True, False, "10", float("nan"), float("inf"), [10]]


@pytest.mark.parametrize("value", BAD_COUNTS, ids=repr)
@pytest.mark.parametrize("argument", ["steps_per_epoch", "total_steps"])
def test_step_counts_that_cannot_work_are_refused_before_the_first_step(argument: str, value: Any) -> None:
    model = TinyNet()
    built = lrrules.build(ruleset(), model)
    kwargs = {"steps_per_epoch": 10, "total_steps": 100, argument: value}
    with pytest.raises(UsageError, match=argument) as info:
        lrrules.rule_scheduler(built.optimizer, built.plan, **kwargs)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", [10, torch.tensor(10)], ids=["int", "tensor"])
def test_whole_step_counts_of_any_integer_kind_work(value: Any) -> None:
    model = TinyNet()
    built = lrrules.build(ruleset(), model)
    scheduler = lrrules.rule_scheduler(built.optimizer, built.plan, steps_per_epoch=value)
    head = next(i for i, g in enumerate(built.plan.groups) if "fc.weight" in g.params)
    lrs = []
    for _ in range(12):
        lrs.append(built.optimizer.param_groups[head]["lr"])
        built.optimizer.step()
        scheduler.step()
    assert lrs[:10] == [pytest.approx(0.05)] * 10 and lrs[10:] == [pytest.approx(0.1)] * 2


def test_numpy_integers_count_as_whole_numbers() -> None:
    np = pytest.importorskip("numpy")
    model = TinyNet()
    built = lrrules.build(ruleset(), model)
    lrrules.rule_scheduler(built.optimizer, built.plan, steps_per_epoch=np.int64(5), total_steps=np.int32(50))
    with pytest.raises(UsageError):
        lrrules.rule_scheduler(built.optimizer, built.plan, steps_per_epoch=np.float64(5.0))


# --- a user attribute named as a wrapper's part ------------------------------------------------------


class Colliding(nn.Module):
    """A module of the user's own with an attribute named as torch.compile's wrapper part."""

    def __init__(self, part: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))
        inner = nn.Module()
        inner.weight = nn.Parameter(torch.zeros(4))
        self.add_module(part, inner)


@pytest.mark.parametrize("part", ["_orig_mod", "_checkpoint_wrapped_module", "_fsdp_wrapped_module"])
def test_two_tensors_left_with_one_name_are_refused(part: str) -> None:
    model = Colliding(part)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["weight", f"{part}.weight"], "torch sees two names"
    with pytest.raises(ModelError, match="'weight'"):
        collect(model)
    with pytest.raises(ModelError):
        lrrules.build(ruleset(), model)


def test_a_wrapper_part_that_collides_nowhere_is_still_taken_out() -> None:
    model = nn.Sequential()
    inner = nn.Module()
    inner.weight = nn.Parameter(torch.ones(2))
    model.add_module("_orig_mod", inner)
    assert [i.name for i in collect(model)[0]] == ["weight"]


@pytest.mark.slow  # torch.compile's first import
def test_a_real_compiled_model_does_not_collide() -> None:
    model = TinyNet()
    compiled = torch.compile(model)
    assert [i.name for i in collect(compiled)[0]] == [n for n, _ in model.named_parameters()]


def test_the_command_line_refuses_a_colliding_model(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "colliding.py").write_text(
        "import torch\nfrom torch import nn\n\n\ndef build():\n    m = nn.Module()\n"
        "    m.weight = nn.Parameter(torch.ones(3))\n    m._orig_mod = nn.Linear(2, 2)\n    return m\n")
    monkeypatch.chdir(tmp_path)
    assert main(["params", "--model", "colliding:build", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrrules: error: colliding:build: ") and "'weight'" in err and "Traceback" not in err


# --- a model changed while lrrules reads it ---------------------------------------------------------


def test_a_model_replaced_between_collecting_and_grouping_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another thread replacing the head right after lrrules collected the parameters (made
    deterministic by doing it inside collect's return)."""
    import lrrules.params

    model = TinyNet()
    real = lrrules.params.collect

    def collect_then_change(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        replace_head(model)
        return found

    monkeypatch.setattr(lrrules.params, "collect", collect_then_change)
    with pytest.raises(ResolveError, match="fc.weight"):
        lrrules.build(ruleset(), model)


class Growing(nn.Module):
    """A model whose own walk adds a module while it is walked: what another thread does to a
    model that lrrules reads through named_modules()."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(2, 2)
        self.b = nn.Linear(2, 2)

    def named_modules(self, *args: Any, **kwargs: Any) -> Any:
        for k, item in enumerate(super().named_modules(*args, **kwargs)):
            if k == 1:
                self.add_module(f"late{k}", nn.Linear(2, 2))
            yield item


def test_a_model_changed_during_the_walk_is_refused() -> None:
    with pytest.raises(ModelError, match="changed while lrrules read") as info:
        collect(Growing(), "pkg:growing")
    assert str(info.value).startswith("pkg:growing: ")


def test_a_real_thread_changing_the_model_never_gives_a_silent_stale_optimizer() -> None:
    """Another thread swaps the head back and forth while the main thread builds: each build either
    refuses with an LrrulesError or hands out exactly the tensors the model had when it was built."""
    import threading

    model = TinyNet()
    heads = [nn.Linear(8, 2), nn.Linear(8, 2)]
    stop = threading.Event()

    def swap() -> None:
        k = 0
        while not stop.is_set():
            model.fc = heads[k % 2]
            k += 1

    thread = threading.Thread(target=swap)
    thread.start()
    try:
        for _ in range(30):
            try:
                built = lrrules.build(ruleset(), model)
            except LrrulesError:
                continue
            handed = {id(p) for g in built.optimizer.param_groups for p in g["params"]}
            assert len(handed) == len(built.plan.params)
            head = {id(p) for p in (heads[0].weight, heads[0].bias)}, {id(p) for p in (heads[1].weight, heads[1].bias)}
            assert head[0] <= handed or head[1] <= handed  # one whole head, never half of each
    finally:
        stop.set()
        thread.join()
