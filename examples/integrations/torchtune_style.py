"""A torchtune-style recipe: a YAML config of ``_component_`` entries, the optimizer lrrules'.

    python examples/integrations/torchtune_style.py

torchtune is not needed: ``instantiate`` below does what ``torchtune.config.instantiate`` does with
a node (import the dotted ``_component_``, call it with the node's other keys and the arguments
given). The recipe passes the model to the optimizer where torchtune passes ``model.parameters()``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

HERE = Path(__file__).parent


def instantiate(node: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    """Call the ``_component_`` of ``node`` (a dotted path) with the arguments and the node's other keys."""
    module, _, name = node["_component_"].rpartition(".")
    component = getattr(importlib.import_module(module), name)
    return component(*args, **{k: v for k, v in node.items() if k != "_component_"}, **kwargs)


def tiny_llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig.from_pretrained(HERE / "tiny-llama"))


def run(config: Path = HERE / "torchtune_style.yaml") -> dict[str, Any]:
    cfg = yaml.safe_load(config.read_text())
    sys.path.insert(0, str(HERE))  # the config names this file's tiny_llama, as a recipe names its builders
    try:
        model = instantiate(cfg["model"])
    finally:
        sys.path.remove(str(HERE))
    optimizer = instantiate(cfg["optimizer"], model=model)
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(cfg["steps"]):
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    return {"losses": losses, "frozen": frozen, "lrs": sorted({g["lr"] for g in optimizer.param_groups})}


if __name__ == "__main__":
    result = run()
    print(f"frozen {result['frozen']}; lrs {result['lrs']}; loss {result['losses'][0]:.3f} -> {result['losses'][-1]:.3f}")
