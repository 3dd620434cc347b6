"""Collecting parameters: registration order, owners, tied weights, and the names under wrappers."""

from __future__ import annotations

import lrrules
import pytest
import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

from lrrules.errors import ModelError
from lrrules.params import clean_name, collect, unwrap
from lrrules.sources import build

from .conftest import TiedLM, TinyNet


def test_collect_gives_names_shapes_and_owners_in_registration_order(tiny: TinyNet) -> None:
    infos, tensors = collect(tiny)
    assert [i.name for i in infos] == [n for n, _ in tiny.named_parameters()]
    assert [i.index for i in infos] == list(range(len(infos)))
    by_name = {i.name: i for i in infos}
    assert by_name["bn1.weight"].module == "BatchNorm2d"
    assert by_name["fc.weight"].shape == (2, 8) and by_name["fc.weight"].numel == 16
    assert by_name["layer1.0.bias"].ndim == 1
    assert all(t is p for t, (_, p) in zip(tensors, tiny.named_parameters()))


def test_requires_grad_is_read_from_the_model(tiny: TinyNet) -> None:
    tiny.conv1.weight.requires_grad_(False)
    infos, _ = collect(tiny)
    assert [i.name for i in infos if not i.requires_grad] == ["conv1.weight"]


def test_tied_weight_is_one_parameter_with_all_its_names(tied: TiedLM) -> None:
    infos, tensors = collect(tied)
    assert [i.name for i in infos] == ["embed.weight", "norm.weight", "norm.bias"]
    assert infos[0].aliases == ("head.weight",)
    assert len({id(t) for t in tensors}) == len(tensors)


def test_module_used_twice_is_one_set_of_parameters() -> None:
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    infos, _ = collect(model)
    assert [(i.name, i.aliases) for i in infos] == [("0.weight", ("2.weight",)), ("0.bias", ("2.bias",))]


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda m: torch.compile(m), id="torch.compile"),
        pytest.param(lambda m: nn.DataParallel(m), id="DataParallel"),
        pytest.param(lambda m: torch.compile(nn.DataParallel(m)), id="compile+DataParallel"),
        pytest.param(lambda m: MMDataParallel(m), id="DataParallel-subclass"),
        pytest.param(lambda m: torch.compile(MMDataParallel(m)), id="compile+DataParallel-subclass"),
    ],
)
def test_wrapped_model_has_the_bare_names(tiny: TinyNet, wrap) -> None:  # type: ignore[no-untyped-def]
    bare = [i.name for i in collect(tiny)[0]]
    wrapped = wrap(tiny)
    assert [n for n, _ in wrapped.named_parameters()] != bare
    assert [i.name for i in collect(wrapped)[0]] == bare


def test_checkpoint_wrapped_and_compiled_submodules_have_the_bare_names(tiny: TinyNet) -> None:
    bare = [i.name for i in collect(tiny)[0]]
    tiny.layer1 = checkpoint_wrapper(tiny.layer1)  # type: ignore[assignment]
    tiny.layer2 = torch.compile(tiny.layer2)  # type: ignore[assignment]
    names = [n for n, _ in tiny.named_parameters()]
    assert any("_checkpoint_wrapped_module" in n for n in names) and any("_orig_mod" in n for n in names)
    assert [i.name for i in collect(tiny)[0]] == bare


def test_unwrap_reaches_the_model_inside_nested_wrappers(tiny: TinyNet) -> None:
    assert unwrap(torch.compile(nn.DataParallel(tiny))) is tiny


class MMDataParallel(nn.DataParallel):  # type: ignore[type-arg]
    """A subclass under another name, as MMEngine's MMDataParallel: recognised by its class."""


class UnknownWrapper(nn.Module):
    """A wrapper lrrules cannot know: its names all start with ``module.``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.module = inner


def test_wrappers_around_parts_of_a_model_are_unwrapped_too(tiny: TinyNet) -> None:
    # MMEngine's MMSeparateDistributedDataParallel wraps each part (generator, discriminator) in DDP.
    bare = [i.name for i in collect(tiny)[0]]
    tiny.layer1 = MMDataParallel(tiny.layer1)  # type: ignore[assignment]
    assert any(n.startswith("layer1.module.") for n, _ in tiny.named_parameters())
    assert [i.name for i in collect(MMDataParallel(tiny))[0]] == bare


def test_a_wrapper_lrrules_does_not_know_is_named_in_a_warning(tiny: TinyNet) -> None:
    import lrrules

    rules = lrrules.loads("version: 1\ndefaults: {lr: 1.0}\nrules:\n  - {name: head, match: 'fc.*'}\n"
                          "  - {name: rest, fallback: true}\n")
    plan = lrrules.resolve(rules, UnknownWrapper(tiny))
    assert any("starts with 'module.'" in w and "model.module" in w for w in plan.warnings())
    assert not any("starts with" in w for w in lrrules.resolve(rules, MMDataParallel(tiny)).warnings())


def test_module_matchers_match_base_classes_like_isinstance() -> None:
    import lrrules

    class MyNorm(nn.LayerNorm):
        pass

    class _BatchNorm(nn.BatchNorm2d):  # MMEngine's SyncBN subclasses have names like this
        pass

    model = nn.Sequential(nn.Linear(4, 4), MyNorm(4), _BatchNorm(4), nn.Linear(4, 2))
    infos, _ = collect(model)
    assert infos[2].module == "MyNorm" and "LayerNorm" in infos[2].bases
    rules = lrrules.loads("version: 1\ndefaults: {lr: 1.0}\nrules:\n"
                          "  - {name: norms, match: {module: ['LayerNorm', 'BatchNorm*']}}\n"
                          "  - {name: rest, fallback: true}\n")
    claimed = {a.name: a.rule for a in lrrules.resolve(rules, model).params}
    wanted = {n: "norms" if isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)) else "rest"
              for mn, m in model.named_children() for n in (f"{mn}.weight", f"{mn}.bias")}
    assert claimed == wanted


def test_a_user_module_named_module_is_kept() -> None:
    model = nn.Module()
    model.module = nn.Linear(2, 2)
    assert [i.name for i in collect(model)[0]] == ["module.weight", "module.bias"]
    assert clean_name("a._orig_mod.b") == "a.b"


def test_build_makes_timm_models_on_the_meta_device() -> None:
    model = build("resnet18", num_classes=3)
    assert model.fc.out_features == 3
    assert all(p.device.type == "meta" for p in model.parameters())


def test_build_suggests_close_names_for_an_unknown_model() -> None:
    with pytest.raises(ModelError, match="did you mean 'resnet18'"):
        build("resnet181")


# --- collect against named_parameters ----------------------------------------------------------------


def described(model: nn.Module) -> list[tuple[object, ...]]:
    """What collect should say of a bare model, from torch's own walk: each tensor once under its first
    name, its other names, its shape, its owner's class, bases and plain attributes, requires_grad."""
    from lrrules.params import _bases, plain_attributes

    first: dict[int, list[str]] = {}
    for name, tensor in model.named_parameters(remove_duplicate=False):
        names = first.setdefault(id(tensor), [])
        if name not in names:
            names.append(name)
    tensors = {id(t): t for _, t in model.named_parameters(remove_duplicate=False)}
    out = []
    for key, names in first.items():
        owner = model.get_submodule(names[0].rpartition(".")[0])
        out.append((names[0], tuple(names[1:]), tuple(tensors[key].shape), type(owner).__name__,
                    _bases(type(owner)), plain_attributes(owner), tensors[key].requires_grad))
    return out


def _timm(name: str) -> nn.Module:
    import timm

    with torch.device("meta"):
        return timm.create_model(name, pretrained=False, num_classes=3)


class WalksItself(nn.Sequential):
    """A module that names its children itself: collect falls back to torch's walk for the model."""

    def named_modules(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        yield from super().named_modules(*args, **kwargs)


def _shared_and_frozen() -> nn.Module:
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.Sequential(nn.Conv1d(3, 3, 1, groups=3), shared), nn.LSTM(3, 4, 2),
                          nn.TransformerEncoderLayer(4, 2, 8))
    model[2].weight_hh_l1.requires_grad_(False)
    return model


FAMILIES = {
    "tiny": lambda: __import__("tests.conftest", fromlist=["TinyNet"]).TinyNet(),
    "tied": lambda: __import__("tests.conftest", fromlist=["TiedLM"]).TiedLM(),
    "shared-lstm-transformer": _shared_and_frozen,
    "walks-itself": lambda: WalksItself(nn.Linear(2, 2), WalksItself(nn.LayerNorm(2), nn.Linear(2, 1))),
    "resnet18": lambda: _timm("resnet18"),
    "vit_tiny": lambda: _timm("vit_tiny_patch16_224"),
    "convnext_atto": lambda: _timm("convnext_atto"),
    "efficientnet_b0": lambda: _timm("efficientnet_b0"),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_collect_describes_every_tensor_as_torchs_own_walk_does(family: str) -> None:
    model = FAMILIES[family]()
    infos, tensors = collect(model)
    got = [(i.name, i.aliases, i.shape, i.module, i.bases, i.attrs, i.requires_grad) for i in infos]
    assert got == described(model)
    assert [i.index for i in infos] == list(range(len(infos)))
    assert [id(t) for t in tensors] == [id(t) for t in dict.fromkeys(model.parameters())]

