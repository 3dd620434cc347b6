"""Muon + AdamW from one rule file on a small random Llama (a local config; nothing downloaded), in a
plain loop, with the Muon groups warming up through a per-rule schedule and a global cosine.

    python examples/integrations/muon_llama.py --steps 10

``lrrules.build`` returns one optimizer holding torch's Muon (the hidden matrices) and AdamW (the
embeddings, the head, the norms); ``lrrules.rule_scheduler`` applies each group's ``lr_schedule``,
multiplied with the cosine passed as ``base``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import lrrules

HERE = Path(__file__).parent
RULES = HERE.parent / "muon-adamw.yaml"


def run(steps: int = 10) -> dict[str, Any]:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig.from_pretrained(HERE / "tiny-llama"))
    text = RULES.read_text().replace("    optimizer: muon\n",
                                     "    optimizer: muon\n    lr_schedule: 'min(1, (step + 1) / 5)'\n")
    optimizer, plan = lrrules.build(lrrules.loads(text, path=str(RULES)), model)
    cosine = lambda step: 0.5 * (1 + math.cos(math.pi * step / steps))  # noqa: E731
    scheduler = lrrules.rule_scheduler(optimizer, plan, total_steps=steps, base=cosine)
    # One batch over and over: the loss must fall as the model memorises it.
    ids = torch.randint(0, model.config.vocab_size, (4, 16), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return {"losses": losses, "optimizers": {n: type(o).__name__ for n, o in optimizer.optimizers.items()},
            "groups": [(g.optimizer, len(g.params)) for g in plan.groups]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    result = run(parser.parse_args().steps)
    print(f"optimizers {result['optimizers']}; loss {result['losses'][0]:.4f} -> {result['losses'][-1]:.4f}")
