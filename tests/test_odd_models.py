"""Odd but real models (issue 21): models whose own walk raises, lazy parameters, parametrizations and
the old weight_norm/spectral_norm hooks, ParameterList/ParameterDict, parameters on the root module, a
submodule compiled alone, complex and zero-size tensors, and tied weights seen under every name.

The expected names, owners and groups come from torch itself (``named_parameters(remove_duplicate=False)``,
``named_modules``) or from small independent code written here, never from lrrules."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrizations, parametrize

import lrrules
from lrrules.cli import main
from lrrules.errors import LrrulesError, ModelError
from lrrules.params import collect
from lrrules.starter import head_prefixes, starter

from .conftest import TiedLM

ALL = """version: 1
defaults: {lr: 0.001, weight_decay: 0.01}
optimizer: {type: AdamW}
rules:
  - {name: all, match: "*"}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def torch_names(model: nn.Module) -> dict[int, list[str]]:
    """Every name of every tensor, by tensor identity, in torch's order (torch's own walk)."""
    found: dict[int, list[str]] = {}
    for name, tensor in model.named_parameters(remove_duplicate=False):
        found.setdefault(id(tensor), []).append(name)
    return found


def owner_of(model: nn.Module, name: str) -> nn.Module:
    """The module the rules should see as the owner of parameter ``name``: the module holding it, or,
    for a parametrization's original tensor (``fc.parametrizations.weight.original0``), the
    parametrized module ``fc``. Written from the names alone, independently of lrrules."""
    path = name.split(".")[:-1]
    if len(path) >= 2 and path[-2] == "parametrizations":
        path = path[:-2]
    return model.get_submodule(".".join(path))


# --- the model's own walk raising ------------------------------------------------------------------


class _Raises(nn.Module):
    error: type[BaseException] = RuntimeError
    method = "named_modules"

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)


def raising(method: str, error: type[Exception]) -> nn.Module:
    """A model whose ``method`` (or its child's) raises ``error``."""

    def broken(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise error("the model's walk is broken")

    kind = type(f"Broken{method.title()}", (_Raises,), {method: broken})
    return kind()  # type: ignore[no-any-return]


METHODS = ["named_modules", "named_parameters", "parameters"]
ERRORS = [RuntimeError, ValueError, KeyError, AttributeError, TypeError, NotImplementedError]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_a_model_whose_own_walk_raises_is_a_model_error_naming_the_source(method: str, error: type[Exception]) -> None:
    model = raising(method, error)
    with pytest.raises(ModelError) as info:
        collect(model, "pkg:broken")
    assert str(info.value).startswith("pkg:broken: ") and method in str(info.value)
    assert error.__name__ in str(info.value)
    with pytest.raises(ModelError):  # and the library's resolve, without a source, names the class
        lrrules.resolve(lrrules.loads(ALL), model)


def test_a_child_that_walks_itself_and_raises_is_refused_too() -> None:
    model = nn.Sequential(nn.Linear(2, 2), raising("named_modules", RuntimeError))
    with pytest.raises(ModelError, match="named_modules"):
        collect(model)


FACTORY = """
import torch
from torch import nn


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def {method}(self, *args, **kwargs):
        raise RuntimeError("broken walk")


def build():
    return Broken()
"""


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("command", ["params", "init", "check"])
def test_the_command_line_says_lrrules_error_and_exits_2(method: str, command: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / f"broken_{method}.py").write_text(FACTORY.format(method=method))
    (tmp_path / "rules.yaml").write_text(ALL)
    monkeypatch.chdir(tmp_path)
    spec = f"broken_{method}:build"
    argv = {"params": ["params"], "init": ["init", "-o", "-"], "check": ["check", "rules.yaml"]}[command]
    code, _, err = run(capsys, *argv, "--model", spec, "--no-cache")
    assert code == 2, err
    assert err.startswith("lrrules: error: ") and spec in err and method in err
    assert "Traceback" not in err



class _UsersOwn(BaseException):
    """A BaseException of the model's own, neither Exception nor KeyboardInterrupt."""


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("error", [SystemExit, GeneratorExit, _UsersOwn], ids=lambda e: e.__name__)
def test_a_walk_raising_a_base_exception_is_a_model_error_too(method: str, error: type[BaseException]) -> None:
    # sys.exit(0) inside named_modules() ended `check --strict` with exit 0 and no output: a CI gate passed
    model = raising(method, error)  # type: ignore[arg-type]
    with pytest.raises(ModelError) as info:
        collect(model, "pkg:broken")
    assert str(info.value).startswith("pkg:broken: ") and method in str(info.value)
    assert error.__name__ in str(info.value)


def test_a_keyboard_interrupt_in_the_walk_still_stops_lrrules() -> None:
    with pytest.raises(KeyboardInterrupt):
        collect(raising("named_modules", KeyboardInterrupt))  # type: ignore[arg-type]


EXITS = """
import sys
from torch import nn


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def named_modules(self, *args, **kwargs):
        sys.exit(0)


class NoList(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def no_weight_decay(self):
        raise GeneratorExit


def build():
    return Broken()


def no_list():
    return NoList()
"""


def test_check_strict_on_a_model_whose_walk_calls_sys_exit_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "exits.py").write_text(EXITS)
    (tmp_path / "rules.yaml").write_text(ALL)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "check", "--strict", "rules.yaml", "--model", "exits:build", "--no-cache")
    assert code == 2, err
    assert err.startswith("lrrules: error: exits:build: ") and "named_modules" in err and "SystemExit" in err
    # a no_weight_decay() hook raising GeneratorExit means no list, as any other failure of it does
    for argv in (["check", "--strict", "rules.yaml"], ["init", "-o", "-"]):
        code, _, err = run(capsys, *argv, "--model", "exits:no_list", "--no-cache")
        assert code == 0, err
        assert "Traceback" not in err

# --- lazy modules --------------------------------------------------------------------------------

LAZY = [
    lambda: nn.LazyLinear(3),
    lambda: nn.Sequential(nn.Linear(2, 4), nn.LazyLinear(3)),
    lambda: nn.Sequential(nn.LazyConv2d(4, 3), nn.LazyBatchNorm2d()),
    lambda: nn.ModuleDict({"a": nn.LazyConv1d(2, 1), "b": nn.Linear(2, 2)}),
]


@pytest.mark.parametrize("make", LAZY)
def test_parameters_a_lazy_module_has_not_made_yet_are_refused_by_name(make: Any) -> None:
    model = make()
    lazy = [n for n, p in model.named_parameters() if isinstance(p, nn.parameter.UninitializedParameter)]
    with pytest.raises(ModelError) as info:
        collect(model)
    message = str(info.value)
    assert "forward" in message and all(n in message for n in lazy[:5])


def test_after_one_forward_pass_a_lazy_model_resolves_with_its_real_shapes() -> None:
    model = nn.Sequential(nn.Linear(2, 4), nn.LazyLinear(3))
    model(torch.zeros(1, 2))
    infos, _ = collect(model)
    assert [(i.name, i.shape) for i in infos] == [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    assert lrrules.build_optimizer(lrrules.loads(ALL), model) is not None


def test_a_lazy_model_on_the_command_line_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lazy_model.py").write_text("from torch import nn\n\ndef build():\n"
                                             "    return nn.Sequential(nn.Linear(2, 4), nn.LazyLinear(3))\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "params", "--model", "lazy_model:build", "--no-cache")
    assert code == 2 and err.startswith("lrrules: error: lazy_model:build: ") and "1.weight" in err
    assert "Traceback" not in err


# --- parametrizations and the old hooks ----------------------------------------------------------


def _new_weight_norm(m: nn.Module) -> None:
    parametrizations.weight_norm(m)


def _new_spectral_norm(m: nn.Module) -> None:
    parametrizations.spectral_norm(m)


def _old_weight_norm(m: nn.Module) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        nn.utils.weight_norm(m)


def _old_spectral_norm(m: nn.Module) -> None:
    nn.utils.spectral_norm(m)


class _Scale(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def _plain_parametrization(m: nn.Module) -> None:
    parametrize.register_parametrization(m, "weight", _Scale())


def _orthogonal(m: nn.Module) -> None:
    parametrizations.orthogonal(m)


WRAPS = {
    "weight_norm": _new_weight_norm,
    "spectral_norm": _new_spectral_norm,
    "old-weight_norm": _old_weight_norm,
    "old-spectral_norm": _old_spectral_norm,
    "register_parametrization": _plain_parametrization,
    "orthogonal": _orthogonal,
}


def layered(wrap: Any, kind: type[nn.Module] = nn.Linear) -> nn.Module:
    """A backbone and a classifier, the classifier under ``wrap``."""
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("backbone", nn.Sequential(nn.Linear(3, 8), nn.LayerNorm(8)))
    head = kind(8, 5) if kind is nn.Linear else kind(8, 5, 1)
    wrap(head)
    model.add_module("classifier", head)
    return model


@pytest.mark.parametrize("wrap", WRAPS.values(), ids=WRAPS.keys())
@pytest.mark.parametrize("kind", [nn.Linear, nn.Conv1d], ids=["Linear", "Conv1d"])
def test_parametrized_tensors_keep_torchs_names_and_their_modules_owner(wrap: Any, kind: type[nn.Module]) -> None:
    model = layered(wrap, kind)
    infos, tensors = collect(model)
    names = torch_names(model)
    assert [i.name for i in infos] == [ns[0] for ns in names.values()]
    for info, tensor in zip(infos, tensors):
        owner = owner_of(model, info.name)
        assert info.module == type(owner).__name__ and info.shape == tuple(tensor.shape), info
        if info.name.startswith("classifier."):  # the Linear's / Conv's class and attributes, for module: and where:
            assert kind.__name__ in (info.module, *info.bases), info
            assert dict(info.attrs)["in_channels" if kind is nn.Conv1d else "in_features"] == 8


@pytest.mark.parametrize("wrap", WRAPS.values(), ids=WRAPS.keys())
def test_a_module_rule_and_a_where_reach_the_parametrized_tensors(wrap: Any) -> None:
    model = layered(wrap)
    text = """version: 1
defaults: {lr: 0.001, weight_decay: 0.01}
rules:
  - {name: head, match: {module: Linear, where: "out_features == 5"}, lr_mult: 10}
  - {name: body, fallback: true}
"""
    plan = lrrules.resolve(lrrules.loads(text), model)
    assert plan.ok
    expected = {n for n, _ in model.named_parameters() if n.startswith("classifier.")}
    assert {a.name for a in plan.params if a.rule == "head"} == expected


@pytest.mark.parametrize("wrap", WRAPS.values(), ids=WRAPS.keys())
def test_init_finds_a_classifier_under_weight_norm_as_the_head(wrap: Any) -> None:
    model = layered(wrap)
    infos, _ = collect(model)
    assert head_prefixes(infos, model) == ["classifier"]
    plan = lrrules.resolve(lrrules.loads(starter(infos, model, "m", no_decay_norm_bias=True)), model)
    assert plan.ok and not plan.warnings()
    on_head = {a.name for a in plan.params if a.rule == "head"}
    assert on_head == {n for n, _ in model.named_parameters() if n.startswith("classifier.")}


class DINOHead(nn.Module):
    """DINO's projection head: an MLP, a bottleneck, and the prototypes under weight_norm."""

    def __init__(self, old: bool) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
        self.last_layer = nn.Linear(4, 32, bias=False)
        (_old_weight_norm if old else _new_weight_norm)(self.last_layer)
        if old:
            self.last_layer.weight_g.data.fill_(1)
            self.last_layer.weight_g.requires_grad = False


class DINO(nn.Module):
    def __init__(self, old: bool) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        self.head = DINOHead(old)


@pytest.mark.parametrize("old", [False, True], ids=["parametrizations", "old-hook"])
def test_dinos_prototypes_under_weight_norm_are_the_head_of_init(old: bool) -> None:
    model = DINO(old)
    infos, _ = collect(model)
    assert head_prefixes(infos, model) == ["head.last_layer"]
    plan = lrrules.resolve(lrrules.loads(starter(infos, model, "dino")), model)
    assert plan.ok
    trained = {n for n, p in model.named_parameters() if n.startswith("head.last_layer.") and p.requires_grad}
    assert {a.name for a in plan.params if a.rule == "head"} == trained
    if old:  # DINO's norm_last_layer: the norm weight_g frozen in the model stays frozen
        assert [f.param for f in plan.frozen] == ["head.last_layer.weight_g"]


@pytest.mark.parametrize("wrap", WRAPS.values(), ids=WRAPS.keys())
def test_a_parametrized_model_builds_an_optimizer_over_the_tensors_it_trains(wrap: Any) -> None:
    model = layered(wrap)
    optimizer = lrrules.build_optimizer(lrrules.loads(ALL), model)
    handed = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(handed) == len({id(p) for p in handed})
    assert {id(p) for p in handed} == {id(p) for p in model.parameters() if p.requires_grad}
    before = [p.detach().clone() for p in handed]
    model(torch.randn(4, 3)).square().sum().backward()
    optimizer.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, handed) if p.grad is not None)


# --- ParameterList / ParameterDict, root parameters, compiled submodules, odd tensors -----------


class Holders(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.plist = nn.ParameterList([nn.Parameter(torch.ones(2, 3)), nn.Parameter(torch.zeros(0, 4))])
        self.pdict = nn.ParameterDict({"b": nn.Parameter(torch.ones(2, 2)),
                                       "a": nn.Parameter(torch.ones(4, dtype=torch.complex64))})
        self.block = nn.Linear(3, 3)
        self.bias = nn.Parameter(torch.zeros(()))


def test_holders_root_parameters_complex_and_zero_size_tensors_have_torchs_names_and_shapes() -> None:
    model = Holders()
    infos, tensors = collect(model)
    assert [(i.name, i.shape) for i in infos] == [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    owners = {i.name: i.module for i in infos}
    assert owners["scale"] == owners["bias"] == "Holders"
    assert owners["plist.0"] == "ParameterList" and owners["pdict.a"] == "ParameterDict"
    optimizer = lrrules.build_optimizer(lrrules.loads(ALL), model)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(t) for t in tensors}


def test_a_zero_size_tensor_in_a_formula_dividing_by_its_size_is_a_rule_error() -> None:
    model = Holders()
    text = ALL.replace('match: "*"}', 'match: "*", lr_mult: "1 / numel"}')
    line = text.splitlines().index('  - {name: all, match: "*", lr_mult: "1 / numel"}') + 1
    with pytest.raises(LrrulesError, match=r"plist\.1") as info:
        lrrules.resolve(lrrules.loads(text), model)
    assert f":{line}:" in str(info.value) and "numel=0" in str(info.value)


@pytest.mark.slow  # torch.compile's first import
def test_a_submodule_compiled_alone_has_its_bare_names() -> None:
    model = Holders()
    bare = [i.name for i in collect(model)[0]]
    model.block = torch.compile(model.block)  # type: ignore[assignment]
    assert any("_orig_mod" in n for n, _ in model.named_parameters())
    infos, tensors = collect(model)
    assert [i.name for i in infos] == bare
    assert {i.name: i.module for i in infos}["block.weight"] == "Linear"
    optimizer = lrrules.build_optimizer(lrrules.loads(ALL), model)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(t) for t in tensors}


# --- tied weights under every name -----------------------------------------------------------------

TIED_MODULE = """version: 1
defaults: {lr: 0.001, weight_decay: 0.01}
rules:
  - {name: head, match: {glob: "head.*", module: Linear}, lr_mult: 10}
  - {name: body, fallback: true}
"""


def test_a_module_matcher_sees_the_owner_of_a_tied_tensors_other_name(tied: TiedLM) -> None:
    plan = lrrules.resolve(lrrules.loads(TIED_MODULE), tied)
    row = next(a for a in plan.params if a.name == "embed.weight")
    assert row.rule == "head" and row.matched_as == "head.weight" and row.lr == pytest.approx(0.01)
    assert not plan.unused_rules


def test_a_module_matcher_does_not_lend_one_names_owner_to_another(tied: TiedLM) -> None:
    # embed.weight is an Embedding's: `{glob: embed.*, module: Linear}` must not claim it through lm_head's Linear
    text = TIED_MODULE.replace('glob: "head.*"', 'glob: "embed.*"')
    plan = lrrules.resolve(lrrules.loads(text), tied)
    assert next(a for a in plan.params if a.name == "embed.weight").rule == "body"


def test_a_phase_freezing_the_head_freezes_a_tied_head(tied: TiedLM) -> None:
    text = TIED_MODULE + "phases:\n  - {from_epoch: 0, freeze: 'head.*'}\n  - {from_epoch: 2, unfreeze: '*'}\n"
    plan = lrrules.resolve(lrrules.loads(text), tied)
    assert plan.frozen_at(epoch=0) == {"embed.weight"}
    plan.apply_phase(epoch=0)
    assert not tied.head.weight.requires_grad and tied.embed.weight is tied.head.weight
    plan.apply_phase(epoch=2)
    assert tied.head.weight.requires_grad


@pytest.mark.slow  # transformers' import
@pytest.mark.parametrize("kind", ["gpt2", "t5"])
def test_on_hugging_face_lms_a_phase_and_a_module_rule_reach_the_tied_lm_head(kind: str) -> None:
    import transformers

    from lrrules.sources import on_meta

    from .conftest import tiny_hf_config

    config = tiny_hf_config(kind)
    model = on_meta(lambda: getattr(transformers, config.architectures[0])(config))
    head = model.lm_head.weight
    names = {n for n, p in model.named_parameters(remove_duplicate=False) if p is head}
    assert len(names) > 1, "the test needs a tied lm_head"
    text = TIED_MODULE.replace("head.*", "lm_head.*") + "phases:\n  - {from_epoch: 0, freeze: 'lm_head.*'}\n"
    plan = lrrules.resolve(lrrules.loads(text), model)
    row = next(a for a in plan.params if set(a.aliases) | {a.name} == names)
    assert row.rule == "head" and row.matched_as == "lm_head.weight"
    assert plan.frozen_at(epoch=0) == {row.name}


# --- generated models: nestings of holders, ties, root parameters, parametrizations ---------------


@st.composite
def models(draw: st.DrawFn) -> nn.Module:
    """A random model: nested containers (Sequential, ModuleDict, ParameterList, ParameterDict, a
    Linear under a parametrization or a hook), parameters on the root, and ties between any two."""
    root = nn.Module()
    made: list[nn.Module] = [root]
    for i in range(draw(st.integers(1, 6))):
        parent = draw(st.sampled_from(made))
        kind = draw(st.sampled_from(["linear", "plist", "pdict", "seq", "wrapped", "param"]))
        name = f"m{i}"
        if kind == "linear":
            child: nn.Module = nn.Linear(draw(st.integers(1, 3)), draw(st.integers(1, 3)),
                                         bias=draw(st.booleans()))
        elif kind == "plist":
            child = nn.ParameterList([nn.Parameter(torch.zeros(draw(st.integers(0, 3))))
                                      for _ in range(draw(st.integers(1, 3)))])
        elif kind == "pdict":
            child = nn.ParameterDict({f"k{j}": nn.Parameter(torch.zeros(2, j)) for j in range(draw(st.integers(1, 3)))})
        elif kind == "seq":
            child = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
        elif kind == "wrapped":
            child = nn.Linear(2, 3)
            draw(st.sampled_from(list(WRAPS.values())))(child)
        else:
            parent.register_parameter(name, nn.Parameter(torch.zeros(draw(st.integers(1, 3)))))
            continue
        parent.add_module(name, child)
        made.append(child)
    holders = [(m, k) for m in root.modules() for k, p in m._parameters.items() if p is not None]
    for _ in range(draw(st.integers(0, 3))):  # tie: one module's parameter becomes another's
        if len(holders) < 2:
            break
        (a, ka), (b, kb) = draw(st.permutations(holders))[:2]
        if type(b) not in (nn.Linear, nn.LayerNorm, nn.Module):
            continue  # a parametrized module recomputes its weight, a list holds its own: leave them alone
        setattr(b, kb, a._parameters[ka])
    return root


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models())
def test_generated_models_give_each_tensor_once_with_every_name_and_owner(model: nn.Module) -> None:
    names = torch_names(model)
    if not names:
        with pytest.raises(LrrulesError):
            lrrules.resolve(lrrules.loads(ALL), model).param_groups()
        return
    infos, tensors = collect(model)
    assert [id(t) for t in tensors] == list(names)
    for info, tensor in zip(infos, tensors):
        assert list(info.names) == names[id(tensor)]
        assert info.shape == tuple(tensor.shape)
        for name in info.names:  # each name's owner, as torch's walk places it
            owner = type(owner_of(model, name))
            assert info.owner(name)[0] == owner.__name__, (name, info)
    plan = lrrules.resolve(lrrules.loads(ALL), model)
    groups = plan.param_groups()
    handed = [id(p) for g in groups for p in g["params"]]
    assert sorted(handed) == sorted(names) and len(handed) == len(set(handed))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models(), st.data())
def test_on_generated_models_any_name_of_a_tensor_with_its_owner_claims_it(model: nn.Module, data: st.DataObject) -> None:
    from lrrules.starter import _glob_escape

    names = torch_names(model)
    if not names:
        return
    tensor_id = data.draw(st.sampled_from(list(names)))
    name = data.draw(st.sampled_from(names[tensor_id]))
    owner = type(owner_of(model, name)).__name__
    text = ("version: 1\ndefaults: {lr: 0.001, weight_decay: 0.01}\nrules:\n"
            f"  - {{name: picked, match: {{glob: '{_glob_escape(name)}', module: '{owner}'}}, lr_mult: 10}}\n"
            "  - {name: rest, fallback: true}\n"
            f"phases:\n  - {{from_epoch: 0, freeze: '{_glob_escape(name)}'}}\n")
    plan = lrrules.resolve(lrrules.loads(text), model)
    first = names[tensor_id][0]
    row = next(a for a in plan.params if a.name == first)
    assert row.rule == "picked"
    assert plan.frozen_at(epoch=0) == {first}


def test_a_where_beside_a_module_matcher_reads_the_attributes_of_the_tied_names_owner(tied: TiedLM) -> None:
    # head.weight is the Linear's (out_features 10), embed.weight the Embedding's (no out_features)
    text = TIED_MODULE.replace("module: Linear}", 'module: Linear, where: "out_features == 10"}')
    plan = lrrules.resolve(lrrules.loads(text), tied)
    assert next(a for a in plan.params if a.name == "embed.weight").rule == "head"
    text = TIED_MODULE.replace("module: Linear}", 'module: Linear, where: "out_features == 11"}')
    assert next(a for a in lrrules.resolve(lrrules.loads(text), tied).params if a.name == "embed.weight").rule == "body"


@pytest.mark.slow  # transformers' import
def test_the_model_cache_keeps_the_owner_of_each_tied_name(hf_dir: Any, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A cached model must give the groups the built one gives: the second run reads the cache."""
    import json

    rules = tmp_path / "rules.yaml"
    rules.write_text(TIED_MODULE.replace("head.*", "lm_head.*").replace(
        "module: Linear}", 'module: Linear, where: "out_features == 64"}'))
    spec = f"hf:{hf_dir('gpt2')}"
    runs = []
    for _ in range(2):
        code, out, err = run(capsys, "resolve", str(rules), "--model", spec, "--format", "json")
        assert code == 0, err
        runs.append({p["name"]: p["rule"] for p in json.loads(out)["params"]})
    assert runs[0] == runs[1] and runs[0]["transformer.wte.weight"] == "head"
