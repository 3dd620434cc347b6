"""Safe resume: optimizer state loads only under the group layout it was saved with."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lrrules
from lrrules.resume import ResumeError

from .conftest import TinyNet

BASE = """
version: 1
defaults: {{lr: 0.01, weight_decay: 0.05}}
rules:
  - {{name: head, match: "fc.*", lr_mult: {head}}}
  - {{name: body, fallback: true}}
modifiers:
  - {{name: no-decay, match: {no_decay}, weight_decay: 0}}
"""


def rules(head: float = 10, no_decay: str = "{ndim: 1}") -> lrrules.RuleSet:
    return lrrules.loads(BASE.format(head=head, no_decay=no_decay))


def trained(ruleset: lrrules.RuleSet, model: torch.nn.Module, steps: int = 2) -> torch.optim.Optimizer:
    optimizer = lrrules.build_optimizer(ruleset, model)
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(2, 3, 8, 8)).square().mean().backward()
        optimizer.step()
    return optimizer


def saved(optimizer: torch.optim.Optimizer) -> dict:
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def restart(ruleset: lrrules.RuleSet, num_classes: int = 2) -> tuple[torch.nn.Module, torch.optim.Optimizer, lrrules.Plan]:
    torch.manual_seed(1)
    model = TinyNet()
    if num_classes != 2:
        model.fc = torch.nn.Linear(8, num_classes)
    return model, lrrules.build_optimizer(ruleset, model), lrrules.resolve(ruleset, model)


def test_same_layout_loads_every_moment_onto_its_own_parameter(tiny: TinyNet) -> None:
    old = trained(rules(), tiny)
    state = saved(old)
    assert state["lrrules"]["fingerprint"] == lrrules.resolve(rules(), tiny).fingerprint

    model, optimizer, plan = restart(rules())
    report = lrrules.load_optimizer_state(optimizer, state, plan)

    assert report.changed == () and "unchanged" in str(report)
    old_by_name = {n: old.state[p] for g in old.param_groups for n, p in zip(g["param_names"], g["params"])}
    for group in optimizer.param_groups:
        for name, param in zip(group["param_names"], group["params"]):
            assert torch.equal(optimizer.state[param]["exp_avg"], old_by_name[name]["exp_avg"]), name


def test_a_parameter_moved_to_another_group_is_refused_with_its_name(tiny: TinyNet) -> None:
    state = saved(trained(rules(), tiny))
    _, optimizer, plan = restart(rules(no_decay="'fc.*'"))
    with pytest.raises(ResumeError) as err:
        lrrules.load_optimizer_state(optimizer, state, plan)
    assert "'fc.weight' moved from group 2 to group 1" in str(err.value)
    assert "'layer1.0.bias' moved from group 1 to group 0" in str(err.value)
    assert not optimizer.state, "nothing was loaded"


def test_a_changed_shape_is_refused(tiny: TinyNet) -> None:
    state = saved(trained(rules(), tiny))
    _, optimizer, plan = restart(rules(), num_classes=5)
    with pytest.raises(ResumeError, match=r"'fc.weight' changed shape: \(2, 8\) -> \(5, 8\)"):
        lrrules.load_optimizer_state(optimizer, state, plan)


def test_a_changed_lr_loads_and_says_which_groups_changed(tiny: TinyNet) -> None:
    state = saved(trained(rules(head=10), tiny))
    _, optimizer, plan = restart(rules(head=20))
    assert plan.fingerprint == lrrules.resolve(rules(head=10), tiny).fingerprint, "an lr is not part of the layout"
    report = lrrules.load_optimizer_state(optimizer, state, plan)
    assert [(c.group, c.setting, c.saved, c.now) for c in report.changed] == [
        (2, "lr", pytest.approx(0.1), pytest.approx(0.2)), (3, "lr", pytest.approx(0.1), pytest.approx(0.2))]
    assert "group 2: lr" in str(report)
    assert optimizer.state, "the state was loaded"


def test_a_state_dict_without_a_record_is_checked_by_its_param_names(tiny: TinyNet) -> None:
    state = saved(trained(rules(), tiny))
    del state["lrrules"]
    _, optimizer, plan = restart(rules(no_decay="'fc.*'"))
    with pytest.raises(ResumeError, match="moved from group"):
        lrrules.load_optimizer_state(optimizer, state, plan)
    for group in state["param_groups"]:
        del group["param_names"]
    with pytest.raises(ResumeError, match="carries no record of its group layout"):
        lrrules.load_optimizer_state(optimizer, state, plan)


def test_an_optimizer_built_some_other_way_is_refused(tiny: TinyNet) -> None:
    plan = lrrules.resolve(rules(), tiny)
    with pytest.raises(ResumeError, match="not built from this plan"):
        lrrules.load_optimizer_state(torch.optim.SGD(tiny.parameters(), lr=0.1), {}, plan)


def test_fingerprint_changes_with_the_layout_only(tiny: TinyNet) -> None:
    assert lrrules.resolve(rules(), tiny).fingerprint == lrrules.resolve(rules(), TinyNet()).fingerprint
    assert lrrules.resolve(rules(), tiny).fingerprint != lrrules.resolve(rules(no_decay="'fc.*'"), tiny).fingerprint


def test_resume_through_a_file_on_disk(tmp_path: Path, tiny: TinyNet) -> None:
    torch.save(trained(rules(), tiny).state_dict(), tmp_path / "opt.pt")
    _, optimizer, plan = restart(rules())
    lrrules.load_optimizer_state(optimizer, torch.load(tmp_path / "opt.pt", weights_only=True), plan)
    assert len(optimizer.state) == sum(len(g["params"]) for g in optimizer.param_groups)


def test_trainers_calling_load_state_dict_themselves_are_guarded_too(tiny: TinyNet) -> None:
    # The Hugging Face Trainer and Lightning call optimizer.load_state_dict, not lrrules.
    state = saved(trained(rules(), tiny))
    _, moved, _ = restart(rules(no_decay="'fc.*'"))
    with pytest.raises(ResumeError, match="'fc.weight' moved from group 2 to group 1"):
        moved.load_state_dict(state)
    assert not moved.state, "nothing was loaded"
    _, same, _ = restart(rules())
    same.load_state_dict(state)
    assert len(same.state) == sum(len(g["params"]) for g in same.param_groups)


def test_a_parameter_frozen_by_a_phase_does_not_move_under_momentum_and_weight_decay() -> None:
    text = ("version: 1\ndefaults: {lr: 0.1, weight_decay: 0.1, momentum: 0.9}\noptimizer: {type: SGD}\n"
            "rules:\n  - {name: all, match: '*'}\nphases:\n  - {from_epoch: 1, freeze: 'fc.*'}\n")
    torch.manual_seed(0)
    model = TinyNet()
    ruleset = lrrules.loads(text)
    optimizer = lrrules.build_optimizer(ruleset, model)
    plan = lrrules.resolve(ruleset, model)
    for epoch in range(3):
        plan.apply_phase(epoch=epoch)
        if epoch == 1:
            frozen_at = model.fc.weight.detach().clone()
        optimizer.zero_grad(set_to_none=False)
        model(torch.randn(2, 3, 8, 8)).square().mean().backward()
        optimizer.step()
    assert torch.equal(model.fc.weight, frozen_at), "momentum and weight decay left it alone"
    assert model.fc.weight.grad is None


# --- a resume state that lies: edited by hand or by another tool ---------------------------------

EDITS = ["reorder-ids", "swap-param-names", "moment-shape", "moment-of-another", "move-between-groups",
         "drop-group", "no-record", "record-names-swapped", "state-for-no-id", "transposed-moment"]


def _edit(state: dict, edit: str, data: st.DataObject) -> str:
    """Apply ``edit`` to ``state`` (a saved optimizer state dict) as a person or another tool might;
    returns a word the refusal must contain (a parameter's name, a group)."""
    import copy

    groups = state["param_groups"]
    record = state["lrrules"]["groups"]
    flat = [n for g in record for n in g["params"]]
    shapes = {n: s for g in record for n, s in zip(g["params"], g["shapes"])}
    if edit == "reorder-ids":
        ids = [i for g in groups for i in g["params"]]
        order = data.draw(st.permutations(ids).filter(lambda p: list(p) != ids), label="ids")
        it = iter(order)
        for g in groups:
            g["params"] = [next(it) for _ in g["params"]]
        return "reordered"
    if edit in ("swap-param-names", "record-names-swapped"):
        g = data.draw(st.sampled_from([g for g in range(len(groups)) if len(groups[g]["params"]) > 1]), label="group")
        a, b = data.draw(st.lists(st.integers(0, len(groups[g]["params"]) - 1), min_size=2, max_size=2, unique=True))
        names = groups[g]["param_names"] if edit == "swap-param-names" else record[g]["params"]
        names[a], names[b] = names[b], names[a]
        return f"group {g}" if edit == "swap-param-names" else f"'{names[a]}'"
    if edit in ("moment-shape", "moment-of-another", "transposed-moment"):
        candidates = [k for k, n in enumerate(flat) if edit != "transposed-moment" or
                      (len(shapes[n]) == 2 and shapes[n][0] != shapes[n][1])]
        k = data.draw(st.sampled_from(candidates), label="param")
        own = tuple(shapes[flat[k]])
        if edit == "moment-shape":
            bad = own + (2,)
        elif edit == "transposed-moment":
            bad = own[::-1]
        else:
            others = [tuple(shapes[n]) for n in flat if tuple(shapes[n]) != own and len(shapes[n]) > 0]
            bad = data.draw(st.sampled_from(others))
        moment = data.draw(st.sampled_from(["exp_avg", "exp_avg_sq"]))
        state["state"][k][moment] = torch.zeros(bad)
        return flat[k]
    if edit == "move-between-groups":
        src = data.draw(st.sampled_from([g for g in range(len(groups)) if groups[g]["params"]]), label="from")
        dst = data.draw(st.sampled_from([g for g in range(len(groups)) if g != src]), label="to")
        groups[dst]["params"].append(groups[src]["params"].pop())
        groups[dst]["param_names"].append(groups[src]["param_names"].pop())
        return "group"
    if edit == "drop-group":
        del groups[data.draw(st.integers(0, len(groups) - 1))]
        return "param_groups"
    if edit == "no-record":
        del state["lrrules"]
        for g in groups:
            del g["param_names"]
        return "no record"
    if edit == "state-for-no-id":
        state["state"][len(flat) + data.draw(st.integers(0, 5))] = copy.deepcopy(state["state"][0])
        return "no group holds"
    raise AssertionError(edit)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edit=st.sampled_from(EDITS), data=st.data())
def test_an_edited_state_dict_is_refused_by_name_and_never_loaded(tiny: TinyNet, edit: str, data: st.DataObject) -> None:
    state = saved(trained(rules(), tiny, steps=1))
    expect = _edit(state, edit, data)
    model, optimizer, plan = restart(rules())
    with pytest.raises(ResumeError) as caught:
        lrrules.load_optimizer_state(optimizer, state, plan)
    assert expect in str(caught.value)
    assert not optimizer.state  # nothing of it was loaded
    # A trainer calling torch's load_state_dict itself meets the same check.
    with pytest.raises(ResumeError):
        optimizer.load_state_dict(state)
    assert not optimizer.state


def test_an_unedited_state_dict_passes_the_same_checks(tiny: TinyNet) -> None:
    state = saved(trained(rules(), tiny, steps=1))
    model, optimizer, plan = restart(rules())
    lrrules.load_optimizer_state(optimizer, state, plan)
    assert len(optimizer.state) == sum(len(g["params"]) for g in optimizer.param_groups)


def test_factored_moments_of_adafactor_load() -> None:
    # Adafactor keeps per-row and per-column statistics: shapes (R, 1) and (1, C), not the parameter's.
    torch.manual_seed(0)
    model = TinyNet()
    ruleset = lrrules.loads("version: 1\noptimizer: {type: Adafactor}\ndefaults: {lr: 0.01}\n"
                            "rules:\n  - {name: all, fallback: true}\n")
    optimizer = lrrules.build_optimizer(ruleset, model)
    model(torch.randn(2, 3, 8, 8)).square().mean().backward()
    optimizer.step()
    state = saved(optimizer)
    shapes = {tuple(v.shape) for s in state["state"].values() for v in s.values() if hasattr(v, "shape")}
    assert any(len(s) == 2 and 1 in s for s in shapes)  # truly factored
    model2, optimizer2, plan = restart(ruleset)
    lrrules.load_optimizer_state(optimizer2, state, plan)
    assert len(optimizer2.state) == len(state["state"])


@pytest.mark.parametrize("kind", ["LBFGS", "SGD", "Adagrad", "RMSprop", "Adadelta", "Rprop", "ASGD", "NAdam", "RAdam",
                                  "Adamax"])
def test_every_torch_optimizers_own_state_passes_the_checks(kind: str) -> None:
    # The shape checks must not refuse what torch's optimizers themselves save (LBFGS: flat vectors
    # over its whole group, kept on the first parameter).
    extra = ", momentum: 0.9" if kind == "SGD" else ""
    ruleset = lrrules.loads(f"version: 1\noptimizer: {{type: {kind}}}\ndefaults: {{lr: 0.01{extra}}}\n"
                            "rules:\n  - {name: all, fallback: true}\n")
    torch.manual_seed(0)
    model = TinyNet()
    optimizer = lrrules.build_optimizer(ruleset, model)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = model(torch.randn(2, 3, 8, 8)).square().mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    state = saved(optimizer)
    _, again, plan = restart(ruleset)
    lrrules.load_optimizer_state(again, state, plan)
    assert len(again.state) == len(state["state"])
