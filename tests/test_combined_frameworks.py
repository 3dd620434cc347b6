"""The combined optimizer where frameworks touch it (issue 20): ``param_groups`` and ``state`` stay
the inner optimizers' own after every ``load_state_dict`` (accelerate's wrap, a Lightning resume),
so the lr a scheduler sets is the lr each inner optimizer steps with.

The expected lrs are written here from the rule text (Muon 0.02, AdamW 3e-4) and each scheduler's
documented formula; the lr "used" is read from the inner optimizer's own group dicts by a step
pre-hook on that inner optimizer, at the moment it steps.
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import lrrules
from lrrules.combined import CombinedOptimizer
from lrrules.errors import UsageError

from .test_several_optimizers import batches, llama

RULES = """
version: 1
defaults: {lr: 3.0e-4, weight_decay: 0.1}
optimizer: {type: AdamW}
optimizers:
  muon: {type: Muon, lr: 0.02, weight_decay: 0.1, adjust_lr_fn: match_rms_adamw}
rules:
  - name: hidden
    match: {all: [{ndim: 2}, {not: ["*embed*", "lm_head.*"]}]}
    optimizer: muon
  - name: rest
    fallback: true
"""
BASE = {"muon": 0.02, "default": 3.0e-4}  # the rule text's lrs, by optimizer


class MLP(nn.Module):
    """Two hidden matrices (Muon's) and their biases and a norm (AdamW's)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up = nn.Linear(8, 16)
        self.down = nn.Linear(16, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.down(self.up(x).relu()))


def built(model: nn.Module) -> CombinedOptimizer:
    optimizer, _ = lrrules.build(lrrules.loads(RULES), model)
    assert isinstance(optimizer, CombinedOptimizer)
    return optimizer


class Used:
    """The lrs each inner optimizer holds when it steps: ``steps[name]`` is one list per step."""

    def __init__(self, optimizer: CombinedOptimizer) -> None:
        self.steps: dict[str, list[list[float]]] = {name: [] for name in optimizer.optimizers}
        for name, inner in optimizer.optimizers.items():
            inner.register_step_pre_hook(self._hook(name))

    def _hook(self, name: str) -> Callable[..., None]:
        def record(inner: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self.steps[name].append([g["lr"] for g in inner.param_groups])
        return record

    def check(self, factor: Callable[[int], float], first: int = 0) -> None:
        assert all(self.steps.values()), "every inner optimizer stepped"
        for name, per_step in self.steps.items():
            for k, lrs in enumerate(per_step, first):
                assert lrs == pytest.approx([BASE[name] * factor(k)] * len(lrs), rel=1e-9, abs=1e-15), (name, k)


def one_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad()
    model(torch.randn(4, 8)).square().mean().backward()
    optimizer.step()


def cosine_with_warmup(warmup: int, total: int) -> Callable[[int], float]:
    def factor(k: int) -> float:
        if k < warmup:
            return k / warmup
        return 0.5 * (1 + math.cos(math.pi * (k - warmup) / (total - warmup)))
    return factor


def one_cycle(total: int, pct_start: float = 0.3, div: float = 25.0, final_div: float = 1e4) -> Callable[[int], float]:
    """OneCycleLR's two phases (cosine annealing), as a factor of max_lr."""
    up_end, down_end = pct_start * total - 1, total - 1

    def anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)

    def factor(k: int) -> float:
        if k <= up_end:
            return anneal(1 / div, 1, k / up_end)
        return anneal(1, 1 / div / final_div, (k - up_end) / (down_end - up_end))
    return factor


SCHEDULES: dict[str, tuple[Callable[[torch.optim.Optimizer], Any], Callable[[int], float]]] = {
    "LambdaLR": (lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 0.5 ** s), lambda k: 0.5 ** k),
    "CosineAnnealingLR": (lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=6),
                          lambda k: 0.5 * (1 + math.cos(math.pi * k / 6))),
    "OneCycleLR": (lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=[BASE["default"]] + [BASE["muon"]] * (len(o.param_groups) - 1), total_steps=6,
        cycle_momentum=False), one_cycle(6)),
    "cosine_with_warmup": (lambda o: __import__("transformers").get_cosine_schedule_with_warmup(o, 2, 6),
                           cosine_with_warmup(2, 6)),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "cosine_with_warmup" else n
                                  for n in SCHEDULES])  # importing transformers takes seconds
def test_a_scheduler_made_before_a_load_state_dict_still_sets_the_lr_each_inner_optimizer_uses(name: str) -> None:
    model = MLP()
    optimizer = built(model)
    assert [o for o in optimizer.optimizers] == ["default", "muon"]
    assert len(optimizer.optimizers["default"].param_groups) == 1, "OneCycleLR's max_lr above: one AdamW group"
    make, factor = SCHEDULES[name]
    scheduler = make(optimizer)  # the Hugging Face Trainer's order: scheduler, then accelerate's wrap
    optimizer.load_state_dict(optimizer.state_dict())  # what accelerate's AcceleratedOptimizer does
    used = Used(optimizer)
    for _ in range(6):
        one_step(model, optimizer)
        scheduler.step()
        optimizer.load_state_dict(optimizer.state_dict())  # and again, mid-run: each replaces the group dicts
    used.check(factor)


def test_param_groups_are_the_inner_optimizers_current_dicts() -> None:
    optimizer = built(MLP())
    inner = optimizer.optimizers
    optimizer.load_state_dict(optimizer.state_dict())
    live = inner["default"].param_groups + inner["muon"].param_groups
    assert all(a is b for a, b in zip(optimizer.param_groups, live, strict=True))
    # An assigned list (accelerate's param_groups setter) hands each optimizer its share.
    groups = [dict(g, lr=0.5) for g in optimizer.param_groups]
    optimizer.param_groups = groups
    assert all(g["lr"] == 0.5 for o in inner.values() for g in o.param_groups)
    assert inner["default"].param_groups[0] is groups[0]
    with pytest.raises(UsageError, match="takes 2 groups"):
        optimizer.param_groups = groups[:1]


def test_state_of_a_tensor_is_its_owners_and_nothing_is_planted_in_the_other() -> None:
    model = MLP()
    optimizer = built(model)
    one_step(model, optimizer)
    muon, adamw = optimizer.optimizers["muon"], optimizer.optimizers["default"]
    weight, bias = model.up.weight, model.up.bias
    assert optimizer.state[weight] is muon.state[weight] and "momentum_buffer" in optimizer.state[weight]
    assert optimizer.state[bias] is adamw.state[bias] and "exp_avg" in optimizer.state[bias]
    assert weight not in adamw.state and bias not in muon.state
    assert len(optimizer.state) == len(muon.state) + len(adamw.state) == 6
    assert set(optimizer.state) == set(model.parameters())
    # Lightning's _optimizer_to_device writes every entry back through the combined state.
    for p, v in list(optimizer.state.items()):
        optimizer.state[p] = {k: t.clone() if isinstance(t, torch.Tensor) else t for k, t in v.items()}
    assert weight not in adamw.state and bias not in muon.state
    optimizer.state_dict()  # never raises: every entry is in the state of an optimizer that holds its tensor
    stranger = torch.zeros(2, requires_grad=True)
    assert stranger not in optimizer.state and optimizer.state.get(stranger) is None
    with pytest.raises(KeyError):
        optimizer.state[stranger]
    with pytest.raises(KeyError):
        optimizer.state[stranger] = {}
    # After a load the inner states are new objects; the combined one reads them.
    optimizer.load_state_dict(optimizer.state_dict())
    assert optimizer.state[weight] is optimizer.optimizers["muon"].state[weight]


def test_hooks_and_a_refused_add_param_group_still_work() -> None:
    model = MLP()
    optimizer = built(model)
    calls: list[str] = []
    optimizer.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    optimizer.register_step_post_hook(lambda o, a, k: calls.append("post"))
    one_step(model, optimizer)
    assert calls == ["pre", "post"]
    with pytest.raises(UsageError, match="optimizers\\[NAME\\]"):
        optimizer.add_param_group({"params": [nn.Parameter(torch.zeros(1))]})
    state = optimizer.state_dict()
    assert "lrrules" in state, "the layout record (a state-dict hook) is still added"
    twin = built(MLP())
    twin.load_state_dict(state)  # and its load hook takes it off again


def test_a_pickled_combined_optimizer_comes_back_whole_and_steps_like_the_original() -> None:
    model = MLP()
    optimizer = built(model)
    one_step(model, optimizer)
    # Pickle the model and the optimizer together, as torch.save does, so the tensors stay shared.
    model2, optimizer2 = pickle.loads(pickle.dumps((model, optimizer)))
    assert isinstance(optimizer2, CombinedOptimizer) and list(optimizer2.optimizers) == ["default", "muon"]
    assert optimizer2.state[model2.up.weight] is optimizer2.optimizers["muon"].state[model2.up.weight]
    copied = copy.deepcopy((model, optimizer))
    for m, o in ((model, optimizer), (model2, optimizer2), copied):
        torch.manual_seed(1)
        one_step(m, o)
    for name, p in model.named_parameters():
        assert torch.equal(p, dict(model2.named_parameters())[name]), name
        assert torch.equal(p, dict(copied[0].named_parameters())[name]), name


# --- driven by the frameworks (slow: seconds each) ----------------------------------------------


def moved(before: dict[str, torch.Tensor], model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


@pytest.mark.slow
def test_the_hugging_face_trainer_with_a_cosine_warmup_schedule_sets_each_inner_lr(tmp_path: Path) -> None:
    pytest.importorskip("accelerate")
    from transformers import Trainer, TrainingArguments

    class Data(torch.utils.data.Dataset):  # type: ignore[type-arg]
        ids = torch.cat(batches(12))

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": self.ids[i], "labels": self.ids[i]}

    model = llama()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = built(model)
    used = Used(optimizer)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=4, use_cpu=True,
                             report_to=[], save_strategy="no", logging_steps=1, lr_scheduler_type="cosine",
                             warmup_steps=2, dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=Data(), optimizers=(optimizer, None))
    trainer.train()
    assert moved(before, model) == set(before)
    assert [len(s) for s in used.steps.values()] == [6, 6]
    used.check(cosine_with_warmup(2, 6))
    logged = [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e]
    # The lr the Trainer logs for each step is the one AdamW stepped with, not one of dicts nobody reads.
    assert logged == pytest.approx([lrs[0] for lrs in used.steps["default"]], rel=1e-9, abs=1e-15)


def lightning_module(lightning: Any, total: int) -> Any:
    class LM(lightning.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = llama()

        def training_step(self, ids: torch.Tensor, _: int) -> torch.Tensor:
            return self.model(input_ids=ids, labels=ids).loss

        def configure_optimizers(self) -> Any:
            self.combined = built(self.model)
            self.used = Used(self.combined)
            scheduler = torch.optim.lr_scheduler.LambdaLR(self.combined, cosine_with_warmup(2, total))
            return {"optimizer": self.combined, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    return LM()


def fit(lightning: Any, module: Any, data: torch.utils.data.DataLoader, ckpt: Path | None = None,  # type: ignore[type-arg]
        **until: int) -> Any:
    trainer = lightning.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, **until)
    trainer.fit(module, data, ckpt_path=str(ckpt) if ckpt else None)
    return trainer


@pytest.mark.slow
def test_lightning_sets_each_inner_lr_saves_after_fit_and_resumes_bit_exactly(tmp_path: Path) -> None:
    lightning = pytest.importorskip("lightning")
    first, total = 3, 6
    # One batch an epoch: where Lightning restarts a plain DataLoader after a resume is its own
    # business (from a checkpoint saved after fit it takes one batch of an epoch, then a new one);
    # the optimizer's is to continue exactly.
    data = torch.utils.data.DataLoader(batches(1)[0], batch_size=2)

    straight = lightning_module(lightning, total)
    fit(lightning, straight, data, max_steps=total)
    straight.used.check(cosine_with_warmup(2, total))

    part = lightning_module(lightning, total)
    trainer = fit(lightning, part, data, max_steps=first)
    part.used.check(cosine_with_warmup(2, total))
    trainer.save_checkpoint(tmp_path / "part.ckpt")  # Lightning has read the combined state at the end of fit
    assert len(part.combined.optimizers["muon"].state) > 0

    resumed = lightning_module(lightning, total)
    fit(lightning, resumed, data, ckpt=tmp_path / "part.ckpt", max_steps=total)
    assert [len(s) for s in resumed.used.steps.values()] == [total - first] * 2
    resumed.used.check(cosine_with_warmup(2, total), first=first)
    for (name, a), b in zip(resumed.model.named_parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_growing_the_combined_param_groups_list_is_refused_not_dropped() -> None:
    # The list is read afresh from the inner optimizers: an appended group would be in no optimizer
    # that steps. Found by review of issue 20.
    from lrrules.combined import CombinedOptimizer
    from lrrules.errors import UsageError

    a, b, c = (torch.nn.Parameter(torch.ones(2, 2)) for _ in range(3))
    combined = CombinedOptimizer({"m": torch.optim.SGD([a], lr=0.1), "d": torch.optim.AdamW([b])})
    for grow in (lambda g: g.append({"params": [c]}), lambda g: g.extend([{"params": [c]}]),
                 lambda g: g.insert(0, {"params": [c]}), lambda g: g.pop(), lambda g: g.clear()):
        with pytest.raises(UsageError, match="add_param_group"):
            grow(combined.param_groups)
    assert sum(len(o.param_groups) for o in combined.optimizers.values()) == 2
    combined.param_groups[1]["lr"] = 0.25  # values stay live
    assert combined.optimizers["d"].param_groups[0]["lr"] == 0.25
