"""Scale on paper: a Llama-3-70B-shaped model (723 tensors) on the meta device, resolved once, bound
per rank to its share of the 80 blocks as pipeline stages would hold them. What one rank's bind
reads and keeps is its own share (counted, never timed), and no tensor's values are ever touched."""

from __future__ import annotations

import copy
import tracemalloc

import pytest
import torch
from torch import nn

import lrrules
import lrrules.distributed as distributed

pytestmark = pytest.mark.slow  # resolving 723 meta tensors and building the model thrice: seconds

RULES = """
version: 1
defaults: {lr: 3.0e-4, weight_decay: 0.1}
layers: {by: blocks}
rules:
  - {name: norms, match: "*norm*", weight_decay: 0.0, lr_mult: "0.9 ** depth"}
  - {name: rest, fallback: true, lr_mult: "0.9 ** depth"}
"""
HIDDEN, INNER, KV, VOCAB, BLOCKS = 8192, 28672, 1024, 128256, 80


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.input_layernorm = nn.RMSNorm(HIDDEN)
        self.q_proj, self.k_proj = nn.Linear(HIDDEN, HIDDEN, bias=False), nn.Linear(HIDDEN, KV, bias=False)
        self.v_proj, self.o_proj = nn.Linear(HIDDEN, KV, bias=False), nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.post_attention_layernorm = nn.RMSNorm(HIDDEN)
        self.gate_proj, self.up_proj = nn.Linear(HIDDEN, INNER, bias=False), nn.Linear(HIDDEN, INNER, bias=False)
        self.down_proj = nn.Linear(INNER, HIDDEN, bias=False)


class Llama70B(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed_tokens: nn.Module | None = nn.Embedding(VOCAB, HIDDEN)
        self.layers = nn.ModuleDict({str(i): Block() for i in range(BLOCKS)})
        self.norm: nn.Module | None = nn.RMSNorm(HIDDEN)
        self.lm_head: nn.Module | None = nn.Linear(HIDDEN, VOCAB, bias=False)


def share(model: Llama70B, rank: int, world: int) -> nn.Module:
    """One rank's stage, torchtitan's way: the other blocks deleted, the ends on the first and last rank."""
    per = BLOCKS // world
    for i in range(BLOCKS):
        if not rank * per <= i < (rank + 1) * per:
            del model.layers[str(i)]
    if rank:
        model.embed_tokens = None
    if rank < world - 1:
        model.norm = model.lm_head = None
    return model


@pytest.fixture(scope="module")
def whole() -> Llama70B:
    with torch.device("meta"):
        return Llama70B()


@pytest.fixture(scope="module")
def plan(whole: Llama70B) -> lrrules.Plan:
    return lrrules.resolve(lrrules.loads(RULES), whole)


def test_one_ranks_bind_reads_and_keeps_its_own_share(whole: Llama70B, plan: lrrules.Plan,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(plan.params) == 723 and plan.num_layers == 82
    read: list[int] = []
    collect = distributed.collect

    def counted(module: nn.Module) -> tuple[list[object], list[torch.Tensor]]:
        infos, tensors = collect(module)
        read.append(len(tensors))
        return infos, tensors  # type: ignore[return-value]

    monkeypatch.setattr(distributed, "collect", counted)
    kept, peaks = {}, {}
    for world in (2, 4, 8):
        middle = share(copy.deepcopy(whole), 1, world)
        tracemalloc.start()
        bound = distributed.bind(plan, middle)
        peaks[world] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        kept[world] = len(bound.params)
        assert all(t.is_meta for t in bound.tensors), "no tensor materialised, nothing gathered"
        assert bound.num_layers == 82, "layers counted on the whole model"
    assert kept == {2: 9 * 40 + 2, 4: 9 * 20, 8: 9 * 10} and read == [362, 180, 90]  # rank 1 of 2 ends the model
    assert peaks[8] <= peaks[4] <= peaks[2], f"bind's memory follows the share, not the world: {peaks}"
    lrs = {a.name: a.lr for a in plan.params}
    assert all(a.lr == lrs[a.name] for a in bound.params), "each tensor keeps its whole-model lr"
