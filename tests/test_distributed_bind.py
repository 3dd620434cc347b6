"""Resolve once on the whole model (on the meta device), bind to what one rank holds: a pipeline
stage keeps the whole model's layer decay; a held tensor the plan does not know is refused by name.
One process, no process group (the sharded cases run on two gloo ranks: test_distributed_engines.py)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import lrrules
from lrrules.distributed import bind, stage_caution
from lrrules.errors import ResolveError

RULES = """
version: 1
defaults: {lr: 1.0, weight_decay: 0.0}
optimizer: {type: SGD}
layers: {by: blocks}
rules:
  - {name: all, match: "*", lr_mult: "0.5 ** depth"}
"""


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)


class LM(nn.Module):
    """embed, 8 numbered blocks, norm, head: timm-style layers 0 (embed) to 9 (head)."""

    def __init__(self, n: int = 8) -> None:
        super().__init__()
        self.embed: nn.Module | None = nn.Embedding(10, 4)
        self.layers = nn.ModuleDict({str(i): Block() for i in range(n)})
        self.norm: nn.Module | None = nn.LayerNorm(4)
        self.head: nn.Module | None = nn.Linear(4, 10)


def stage(first: int, last: int) -> LM:
    """The model as torchtitan leaves one pipeline stage: the other stages' blocks deleted, their ends None."""
    model = LM()
    for i in range(8):
        if not first <= i <= last:
            del model.layers[str(i)]
    if first > 0:
        model.embed = None
    if last < 7:
        model.norm = model.head = None
    return model


def whole_plan() -> lrrules.Plan:
    with torch.device("meta"):
        return lrrules.resolve(lrrules.loads(RULES), LM())


def lrs(plan: lrrules.Plan) -> dict[str, float | None]:
    return {a.name: a.lr for a in plan.params}


def test_a_stage_bound_to_the_whole_models_plan_gets_the_whole_models_lrs() -> None:
    plan = whole_plan()
    first = bind(plan, stage(0, 3))
    assert lrs(first)["layers.0.attn.weight"] == pytest.approx(0.5**8)  # 0.0039, as on the whole model
    assert sorted(lrs(first)) == sorted(n for n in lrs(plan) if n.startswith(("embed.", *(f"layers.{i}." for i in range(4)))))
    assert first.num_layers == plan.num_layers == 10
    last = bind(plan, stage(4, 7))
    assert lrs(last)["head.weight"] == pytest.approx(1.0) and lrs(last)["layers.4.norm.bias"] == pytest.approx(0.5**4)
    # the optimizer holds exactly this stage's tensors, each at its whole-model lr
    model = stage(4, 7)
    optimizer, bound = lrrules.build(lrrules.loads(RULES), model, plan=plan)
    held = {id(p) for p in model.parameters()}
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == held
    for group in optimizer.param_groups:
        assert all(group["lr"] == pytest.approx(lrs(plan)[n]) for n in group["param_names"])


def test_a_stage_given_as_a_submodule_binds_with_its_prefix() -> None:
    plan = whole_plan()
    blocks = stage(4, 7).layers
    bound = bind(plan, blocks, prefix="layers.")
    assert lrs(bound)["layers.5.attn.weight"] == pytest.approx(0.5**3)
    with pytest.raises(ResolveError, match=r"'4\.attn\.weight'.*prefix="):
        bind(plan, blocks)


def test_a_stage_resolved_alone_is_told_its_depth_counts_only_its_blocks() -> None:
    alone = stage(4, 7)
    assert lrs(lrrules.resolve(lrrules.loads(RULES), alone))["layers.4.attn.weight"] == pytest.approx(0.5**4)
    caution = stage_caution(lrrules.resolve(lrrules.loads(RULES), alone).infos)
    assert caution is not None and "'layers.'" in caution and "4 to 7" in caution and "lrrules.bind" in caution
    with pytest.warns(UserWarning, match="pipeline stage"):
        lrrules.build(lrrules.loads(RULES), alone)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lrrules.build(lrrules.loads(RULES), LM())  # numbered from 0: no caution
    assert stage_caution(lrrules.resolve(lrrules.loads(RULES), stage(0, 3)).infos) is None


def test_a_held_tensor_the_plan_does_not_know_or_of_another_shape_is_refused_by_name() -> None:
    plan = whole_plan()
    extra = stage(0, 3)
    extra.layers["0"].gate = nn.Linear(4, 1)
    with pytest.raises(ResolveError, match=r"not in the plan: 'layers\.0\.gate\.weight', 'layers\.0\.gate\.bias'"):
        bind(plan, extra)
    wider = stage(0, 3)
    wider.layers["2"].attn = nn.Linear(4, 6)
    with pytest.raises(ResolveError, match=r"'layers\.2\.attn\.weight' \(6, 4\) \(the plan's \(4, 4\)\)"):
        bind(plan, wider)


PHASED = """
version: 1
defaults: {lr: 0.1, weight_decay: 0.1}
optimizer: {type: AdamW}
rules:
  - {name: head, match: "head.*"}
  - {name: body, fallback: true}
phases:
  - {from_epoch: 0, freeze: "layers.*"}
  - {from_epoch: 1, unfreeze: "layers.*"}
"""


def test_a_phase_applied_before_build_leaves_its_tensors_in_their_groups() -> None:
    rules = lrrules.loads(PHASED)
    model = LM(2)
    lrrules.resolve(rules, model).apply_phase(epoch=0)  # too early: before the optimizer exists
    optimizer, plan = lrrules.build(rules, model)
    grouped = {n for g in optimizer.param_groups for n in g["param_names"]}
    assert "layers.0.attn.weight" in grouped, "the phase that unfreezes it later finds it in its group"
    assert not model.layers["0"].attn.weight.requires_grad, "and it stays frozen until then"
    plan.apply_phase(epoch=1)
    assert model.layers["0"].attn.weight.requires_grad


def test_adamw_with_weight_decay_leaves_a_tensor_whose_grad_is_none_exactly_still() -> None:
    rules = lrrules.loads(PHASED)
    model = LM(2)
    optimizer, plan = lrrules.build(rules, model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n is not None}
    for epoch in range(2):
        plan.apply_phase(epoch=0)  # layers.* frozen: grad None, skipped by AdamW (weight decay too)
        optimizer.zero_grad()
        out = model.head(model.norm(model.layers["1"].attn(model.embed(torch.tensor([1, 2])))))
        out.square().mean().backward()
        optimizer.step()
    after = dict(model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before if n.startswith("layers."))
    assert not torch.equal(before["head.weight"], after["head.weight"])


@pytest.mark.slow
def test_the_lightning_callback_applies_phases_by_step() -> None:
    lightning = pytest.importorskip("lightning.pytorch")
    from lrrules.lightning import phase_callback

    rules = lrrules.loads(PHASED.replace("from_epoch: 0", "from_step: 0").replace("from_epoch: 1", "from_step: 2"))
    seen: list[bool] = []

    class Module(lightning.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = LM(2)
            self.built = lrrules.build(rules, self.net)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            seen.append(self.net.layers["0"].attn.weight.requires_grad)
            h = self.net.layers["0"].attn(self.net.embed(batch[0]))
            return self.net.head(h).square().mean()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return self.built.optimizer

    module = Module()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randint(0, 10, (4, 2))), batch_size=1)
    trainer = lightning.Trainer(max_steps=4, callbacks=[phase_callback(module.built.plan)], logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, data)
    assert seen == [False, False, True, True], "frozen at steps 0 and 1, unfrozen from step 2"


class FullyShardedDataParallel(nn.Module):
    """What FSDP1 leaves a rank (FSDP1 needs an accelerator, so its layout is built by hand here): the
    wrapped module's parameters as 1-D views of this rank's shard, and one flat parameter whose
    ``_fqns`` and ``_shapes`` record the original names and shapes."""

    def __init__(self, module: nn.Module, use_orig_params: bool) -> None:
        super().__init__()
        names, shapes = zip(*[(n, p.shape) for n, p in module.named_parameters()])
        flat = nn.Parameter(torch.zeros(sum(s.numel() for s in shapes) // 2))
        flat._fqns, flat._shapes = names, shapes  # type: ignore[attr-defined]
        self._fsdp_wrapped_module = module
        if use_orig_params:  # each parameter a view into the shard (its first half, on rank 0)
            for name, shape in zip(names, shapes):
                owner, _, local = name.rpartition(".")
                view = nn.Parameter(torch.zeros(shape.numel() // 2))
                setattr(module.get_submodule(owner) if owner else module, local, view)
            self.__dict__["_flat_param"] = flat
        else:
            for name in names:
                owner, _, local = name.rpartition(".")
                delattr(module.get_submodule(owner) if owner else module, local)
            self._flat_param = flat


def test_fsdp1_is_bound_by_its_original_shapes_and_its_flat_parameter_refused() -> None:
    rules = lrrules.loads(RULES)
    plan = whole_plan()
    wrapped = FullyShardedDataParallel(LM(), use_orig_params=True)
    bound = bind(plan, wrapped)
    assert {a.name: a.shape for a in bound.params} == {a.name: a.shape for a in plan.params}
    assert lrs(bound) == lrs(plan)
    with pytest.raises(lrrules.LrrulesError, match="FSDP1.*resolve on the model before wrapping"):
        lrrules.build(rules, wrapped)  # resolved on 1-D views, each rank would get another plan
    optimizer, _ = lrrules.build(rules, wrapped, plan=plan)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(plan.params)
    with pytest.raises(ResolveError, match=r"'_flat_param' is FSDP1's flat parameter \(use_orig_params=False\)"):
        bind(plan, FullyShardedDataParallel(LM(), use_orig_params=False))


def test_build_takes_the_whole_models_plan_in_place_of_the_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    with torch.device("meta"):
        plan = lrrules.resolve(str(path), LM())
    optimizer, bound = lrrules.build(plan, stage(4, 7))  # its rules read again from the file
    assert lrs(bound)["layers.4.attn.weight"] == pytest.approx(0.5**4)
    with pytest.raises(lrrules.LrrulesError, match=r"given as text.*plan=plan"):
        lrrules.build(whole_plan(), stage(4, 7))
