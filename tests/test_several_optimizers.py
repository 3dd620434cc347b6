"""Several optimizers from one file (issue 13): routing, the combined optimizer, shape refusals."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
import torch

import lrrules
from lrrules.combined import CombinedOptimizer
from lrrules.errors import LrrulesError, OptimizerError, PlanProblemsError, ResumeError, RuleFileError

from .conftest import TinyNet

EXAMPLE = Path(__file__).parent.parent / "examples" / "muon-adamw.yaml"


def llama() -> torch.nn.Module:
    import transformers as tf

    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    return tf.LlamaForCausalLM(config)


def is_hidden_matrix(name: str, p: torch.Tensor) -> bool:
    """The split torch's Muon documentation writes by hand."""
    return p.ndim == 2 and "embed" not in name and not name.startswith("lm_head.")


def hand_written(model: torch.nn.Module) -> list[torch.optim.Optimizer]:
    named = list(model.named_parameters())
    return [torch.optim.Muon([p for n, p in named if is_hidden_matrix(n, p)], lr=0.02, weight_decay=0.1,
                             ns_steps=5, adjust_lr_fn="match_rms_adamw"),
            torch.optim.AdamW([p for n, p in named if not is_hidden_matrix(n, p)], lr=3e-4, weight_decay=0.1)]


def batches(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 64, (2, 8), generator=g) for _ in range(n)]


def train(model: torch.nn.Module, optimizers: list[Any], data: list[torch.Tensor]) -> None:
    for ids in data:
        for o in optimizers:
            o.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        for o in optimizers:
            o.step()


def test_muon_and_adamw_from_one_file_equal_the_hand_written_split_step_for_step() -> None:
    pytest.importorskip("transformers")
    ours, theirs = llama(), llama()
    optimizer, plan = lrrules.build(EXAMPLE, ours)
    assert isinstance(optimizer, CombinedOptimizer) and isinstance(optimizer, torch.optim.Optimizer)
    assert set(optimizer.optimizers) == {"default", "muon"}
    routed = {n for g in plan.groups if g.optimizer == "muon" for n in g.params}
    assert routed == {n for n, p in theirs.named_parameters() if is_hidden_matrix(n, p)}
    assert {type(o) for o in optimizer.optimizers.values()} == {torch.optim.Muon, torch.optim.AdamW}
    muon = optimizer.optimizers["muon"].param_groups
    assert all(type(g["ns_steps"]) is int and g["adjust_lr_fn"] == "match_rms_adamw" for g in muon)
    split = hand_written(theirs)
    for ids in batches(4):
        train(ours, [optimizer], [ids])
        train(theirs, split, [ids])
        for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
            assert torch.equal(a, b), name


def test_the_combined_optimizer_resumes_bit_exactly() -> None:
    pytest.importorskip("transformers")
    data = batches(5)
    straight = llama()
    optimizer, _ = lrrules.build(EXAMPLE, straight)
    train(straight, [optimizer], data)

    first = llama()
    optimizer, _ = lrrules.build(EXAMPLE, first)
    train(first, [optimizer], data[:3])
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    assert "lrrules" in saved["optimizer"], "the layout record travels with the state"

    resumed = llama()
    resumed.load_state_dict(saved["model"])
    optimizer, plan = lrrules.build(EXAMPLE, resumed)
    report = lrrules.load_optimizer_state(optimizer, saved["optimizer"], plan)
    assert not report.changed
    train(resumed, [optimizer], data[3:])
    for (name, a), b in zip(resumed.named_parameters(), straight.parameters()):
        assert torch.equal(a, b), name


def test_a_state_saved_under_another_routing_is_refused() -> None:
    pytest.importorskip("transformers")
    model = llama()
    optimizer, _ = lrrules.build(EXAMPLE, model)
    train(model, [optimizer], batches(1))
    state = optimizer.state_dict()
    text = EXAMPLE.read_text().replace("{role: hidden, ndim: 2}", "{role: [hidden, head], ndim: 2}")  # lm_head now goes to Muon
    moved = lrrules.loads(text, path=str(EXAMPLE))
    other, _ = lrrules.build(moved, llama())
    with pytest.raises(ResumeError, match="lm_head.weight"):
        other.load_state_dict(state)


def test_schedulers_and_zero_grad_reach_every_inner_optimizer() -> None:
    model = TinyNet()
    optimizer, plan = lrrules.build(lrrules.loads(SPLIT), model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    scheduler.step()
    inner = [g for o in optimizer.optimizers.values() for g in o.param_groups]
    assert [g["lr"] for g in inner] == [g.lr * 0.5 for g in plan.groups]
    assert [g["param_names"] for g in optimizer.param_groups] == [list(g.params) for g in plan.groups]
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


SPLIT = """
version: 1
defaults: {lr: 0.01, weight_decay: 0.01}
optimizer: {type: AdamW}
optimizers:
  sgd: {type: SGD, lr: 0.1, momentum: 0.9, nesterov: true}
rules:
  - {name: convs, match: {ndim: 4}, optimizer: sgd}
  - {name: rest, fallback: true}
modifiers:
  - {name: slow-fc, match: "fc.*", lr_mult: 0.5}
"""


def test_each_optimizer_is_the_defaults_of_what_is_routed_to_it() -> None:
    plan = lrrules.resolve(lrrules.loads(SPLIT), TinyNet())
    for a in plan.params:
        sgd = len(a.shape) == 4
        base = 0.1 if sgd else 0.01
        assert a.lr == pytest.approx(base * (0.5 if a.name.startswith("fc.") else 1)), a.name
        assert (a.options.get("momentum"), a.options.get("nesterov")) == ((0.9, True) if sgd else (None, None))
        assert plan.groups[a.group].optimizer == ("sgd" if sgd else "default")
    # The groups of one optimizer are together, the default's first: the combined param_groups' order.
    order = [g.optimizer for g in plan.groups]
    assert order == sorted(order, key=["default", "sgd"].index)


def test_options_keep_their_types() -> None:
    ruleset = lrrules.loads(EXAMPLE.read_text())
    spec = ruleset.optimizers["muon"]
    assert type(spec.options["ns_steps"]) is int and spec.options["adjust_lr_fn"] == "match_rms_adamw"
    rules = lrrules.loads("version: 1\ndefaults: {lr: 0.1, steps: 5}\nrules:\n"
                          "  - {name: a, fallback: true, options: {k: 3}}")
    assert type(rules.defaults.options["steps"]) is int and type(rules.rules[0].options["k"]) is int


def models() -> list[tuple[str, torch.nn.Module]]:
    import timm

    out = [("tiny", TinyNet())]
    for name in ("resnet18", "vit_tiny_patch16_224", "convnext_atto", "efficientnet_b0"):
        with torch.device("meta"):
            out.append((name, timm.create_model(name, pretrained=False)))
    return out


@pytest.mark.parametrize(("name", "model"), models(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_tensor_muon_cannot_take_is_refused_by_name(name: str, model: torch.nn.Module) -> None:
    everything = lrrules.loads("version: 1\ndefaults: {lr: 0.1}\noptimizers: {m: {type: Muon}}\n"
                               "rules: [{name: all, match: '*', optimizer: m}]")
    plan = lrrules.resolve(everything, model)
    refused = {c.param for c in plan.conflicts if c.kind == "optimizer"}
    assert refused == {n for n, p in model.named_parameters() if p.ndim != 2}
    assert all("Muon" in c.message and "'all'" in c.message for c in plan.conflicts)
    with pytest.raises(PlanProblemsError, match="takes only 2-D tensors"):
        plan.param_groups()
    split = lrrules.loads("version: 1\ndefaults: {lr: 0.1}\noptimizers: {m: {type: Muon}}\n"
                          "rules: [{name: mats, match: {ndim: 2}, optimizer: m}, {name: rest, fallback: true}]")
    plan = lrrules.resolve(split, model)
    assert plan.ok
    assert sum(len(g.params) for g in plan.groups) == len(list(model.parameters()))


@pytest.mark.parametrize(("text", "where", "says"), [
    ("rules: [{name: a, fallback: true, optimizer: muno}]", "rules[0].optimizer", "did you mean 'muon'"),
    ("optimizers: {default: {type: SGD}}\nrules: [{name: a, fallback: true}]", "optimizers", "single"),
    ("rules: [{name: a, fallback: true, lr_schedule: 'step / totl_steps'}]", "lr_schedule", "totl_steps"),
])
def test_file_errors_are_placed(text: str, where: str, says: str) -> None:
    body = "version: 1\ndefaults: {lr: 0.1}\noptimizers: {muon: {type: Muon}}\n" if "optimizers:" not in text \
        else "version: 1\ndefaults: {lr: 0.1}\n"
    with pytest.raises(RuleFileError) as info:
        lrrules.loads(body + text, path="r.yaml")
    assert says in str(info.value) and str(info.value).startswith("r.yaml:")


def test_two_modifiers_routing_one_parameter_differently_conflict() -> None:
    text = SPLIT + "  - {name: to-adamw, match: 'conv1.*', optimizer: default}\n" \
                   "  - {name: to-sgd, match: 'conv1.*', optimizer: sgd}\n"
    plan = lrrules.resolve(lrrules.loads(text), TinyNet())
    assert [(c.param, c.setting) for c in plan.conflicts] == [("conv1.weight", "optimizer")]


def test_an_option_the_optimizer_does_not_take_is_refused_with_its_place() -> None:
    text = SPLIT.replace("nesterov: true", "nestrov: true")
    with pytest.raises(OptimizerError, match=r"'nestrov' is not an option of SGD \(did you mean 'nesterov'") as info:
        lrrules.build(lrrules.loads(text, path="r.yaml"), TinyNet())
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "nestrov" in t)
    assert str(info.value).startswith(f"r.yaml:{line}:")
    assert all(p.requires_grad for p in TinyNet().parameters())


def test_group_keys_are_put_in_the_groups_and_still_catch_typos() -> None:
    text = SPLIT.replace("nesterov: true", "nesterov: true, group_keys: [use_fallback], use_fallback: false")
    optimizer, _ = lrrules.build(lrrules.loads(text), TinyNet())
    assert all(g["use_fallback"] is False for g in optimizer.optimizers["sgd"].param_groups)
    bad = text.replace("lr_mult: 0.5}", "lr_mult: 0.5, optimizer: sgd, options: {use_fallbak: true}}")
    with pytest.raises(OptimizerError, match="use_fallbak"):
        lrrules.build(lrrules.loads(bad), TinyNet())


def test_the_caller_passes_a_class_for_a_named_optimizer() -> None:
    class MySGD(torch.optim.SGD):
        pass

    optimizer, _ = lrrules.build(lrrules.loads(SPLIT), TinyNet(), optimizers={"sgd": MySGD})
    assert type(optimizer.optimizers["sgd"]) is MySGD
    with pytest.raises(LrrulesError, match="'sgdd'"):
        lrrules.build(lrrules.loads(SPLIT), TinyNet(), optimizers={"sgdd": MySGD})


def test_a_param_group_added_to_the_combination_alone_is_refused() -> None:
    optimizer, _ = lrrules.build(lrrules.loads(SPLIT), TinyNet())
    with pytest.raises(LrrulesError, match="optimizers\\[NAME\\]"):
        optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))]})


def test_a_closure_runs_once_per_step() -> None:
    model = TinyNet()
    optimizer, _ = lrrules.build(lrrules.loads(SPLIT), model)
    calls = []

    def closure() -> torch.Tensor:
        calls.append(1)
        optimizer.zero_grad()
        loss = model(torch.randn(2, 3, 8, 8)).square().mean()
        loss.backward()
        return loss

    before = copy.deepcopy(model.state_dict())
    assert optimizer.step(closure) is not None and len(calls) == 1
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())


def test_plan_param_groups_come_one_optimizer_at_a_time() -> None:
    plan = lrrules.resolve(lrrules.loads(SPLIT), TinyNet())
    with pytest.raises(PlanProblemsError, match="several optimizers.*default, sgd"):
        plan.param_groups()
    sgd = plan.param_groups(optimizer="sgd")
    assert [g["param_names"] for g in sgd] == [list(g.params) for g in plan.groups if g.optimizer == "sgd"]
    assert all(g["momentum"] == 0.9 for g in sgd)


def test_cli_check_checks_each_optimizer_with_the_options_routed_to_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lrrules.cli import main

    good = SPLIT.replace("optimizer: sgd}", "optimizer: sgd, options: {dampening: 0.0}}")
    (tmp_path / "good.yaml").write_text(good)
    assert main(["check", str(tmp_path / "good.yaml"), "--model", "tests.conftest:TinyNet"]) == 0
    (tmp_path / "bad.yaml").write_text(good.replace("dampening", "dampning"))
    assert main(["check", str(tmp_path / "bad.yaml"), "--model", "tests.conftest:TinyNet"]) == 2
    assert "did you mean 'dampening'" in capsys.readouterr().err


def test_a_state_saved_when_a_named_optimizer_had_another_type_is_refused() -> None:
    model = TinyNet()
    optimizer, _ = lrrules.build(lrrules.loads(SPLIT), model)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    retyped = SPLIT.replace("type: SGD, lr: 0.1, momentum: 0.9, nesterov: true", "type: Adam, lr: 0.1")
    other, _ = lrrules.build(lrrules.loads(retyped), TinyNet())
    with pytest.raises(ResumeError, match="'sgd' was SGD .* is Adam now"):
        other.load_state_dict(state)


ROUTED = """
version: 1
defaults: {lr: 0.01}
optimizers:
  second: {type: AdamW}
rules:
  - {name: head, match: "fc.*", optimizer: second}
  - {name: rest, fallback: true}
"""


def test_diff_reports_a_tensor_moved_to_another_optimizer_with_nothing_else_changed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from lrrules.cli import main

    # Both optimizers are AdamW at the same lr: the route is the only difference.
    (tmp_path / "old.yaml").write_text(ROUTED)
    (tmp_path / "new.yaml").write_text(ROUTED.replace('"fc.*", optimizer: second', '"fc.*"'))
    argv = ["diff", str(tmp_path / "old.yaml"), str(tmp_path / "new.yaml"), "--model", "tests.conftest:TinyNet"]
    assert main(argv) == 1  # a difference, as any other
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:4] for line in lines[1:-1]] == [["fc.weight", "optimizer", "second", "default"],
                                                          ["fc.bias", "optimizer", "second", "default"]]
    assert main([*argv, "--format", "json"]) == 1
    assert json.loads(capsys.readouterr().out) == [
        {"param": n, "setting": "optimizer", "old": "second", "new": "default"} for n in ("fc.weight", "fc.bias")]
    assert main([argv[0], argv[1], *argv[1:2], *argv[3:]]) == 0, "a file against itself: no difference"
    capsys.readouterr()
    (tmp_path / "sgd.yaml").write_text(ROUTED.replace("second: {type: AdamW}", "second: {type: SGD}"))
    assert main(["diff", str(tmp_path / "old.yaml"), str(tmp_path / "sgd.yaml"), "--model",
                 "tests.conftest:TinyNet", "--format", "json"]) == 1
    assert {"param": "(optimizers.second)", "setting": "type", "old": "AdamW", "new": "SGD"} \
        in json.loads(capsys.readouterr().out)


def test_explain_names_the_optimizer_each_tensor_goes_to(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from lrrules.cli import main

    (tmp_path / "r.yaml").write_text(ROUTED.replace("second: {type: AdamW}", "second: {type: SGD, momentum: 0.9}"))
    argv = ["explain", str(tmp_path / "r.yaml"), "--model", "tests.conftest:TinyNet"]
    assert main([*argv, "fc.weight"]) == 0
    assert "  optimizer: second (SGD)\n" in capsys.readouterr().out
    assert main([*argv, "conv1.weight"]) == 0
    assert "  optimizer: default (AdamW)\n" in capsys.readouterr().out
    assert main([*argv, "*", "--format", "json"]) == 0
    routes = {d["name"]: (d["optimizer"], d["optimizer_type"]) for d in json.loads(capsys.readouterr().out)}
    assert routes["fc.bias"] == ("second", "SGD") and routes["layer1.0.weight"] == ("default", "AdamW")


@pytest.mark.parametrize("use_cache", [True, False])
def test_check_with_a_model_refuses_a_group_value_its_optimizer_refuses_at_the_rule_as_build_does(
        tmp_path: Path, use_cache: bool) -> None:
    """SGD refuses Nesterov with dampening only in its constructor: ``check --model`` finds what
    ``build`` would refuse, at the rule that sets it, from the cache as from a first run."""
    text = SPLIT.replace("optimizer: sgd}", "optimizer: sgd, options: {dampening: 0.1}}")
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(lrrules.errors.OptimizerError, match="Nesterov"):
        lrrules.build(lrrules.load(path), TinyNet())
    for _ in range(2):  # the second time, a remembered pass would hide it: a failure is never remembered
        found = lrrules.check(str(path), [TinyNet()], cache=use_cache)
        errors = [f for f in found if f.level == "error"]
        assert [(f.line, "Nesterov" in f.message) for f in errors] == [(text.splitlines().index(
            "  - {name: convs, match: {ndim: 4}, optimizer: sgd, options: {dampening: 0.1}}") + 1, True)]
