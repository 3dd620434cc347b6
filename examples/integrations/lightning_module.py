"""PyTorch Lightning: configure_optimizers returns lrrules' optimizer and a scheduler, and a callback
applies the rule file's training phases (gradual unfreezing) at every epoch.

    python examples/integrations/lightning_module.py --epochs 4
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import lightning as L
import timm
import torch
from torch import nn

import lrrules
from lrrules.lightning import phase_callback

RULES = Path(__file__).parents[1] / "resnet18-gradual-unfreezing.yaml"


class Classifier(L.LightningModule):
    def __init__(self, rules: lrrules.RuleSet) -> None:
        super().__init__()
        self.model = timm.create_model("resnet18", pretrained=False, num_classes=2)
        self.rules = rules
        # Built here, once: the phase callback needs the plan before Lightning asks for the optimizer.
        self.optimizer, self.plan = lrrules.build(rules, self.model)
        self.trainable_log: list[int] = []

    def training_step(self, batch: Any, _: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.model(x), y)

    def on_train_epoch_start(self) -> None:
        self.trainable_log.append(sum(p.requires_grad for p in self.model.parameters()))

    def configure_optimizers(self) -> Any:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=10)
        return {"optimizer": self.optimizer, "lr_scheduler": scheduler}


def run(epochs: int = 4, batches: int = 2) -> dict[str, Any]:
    torch.manual_seed(0)
    module = Classifier(lrrules.load(RULES))
    data = torch.utils.data.TensorDataset(torch.randn(4 * batches, 3, 32, 32), torch.randint(0, 2, (4 * batches,)))
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[phase_callback(module.plan)])
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
    optimizer = trainer.optimizers[0]
    return {"trainable_per_epoch": module.trainable_log, "groups": len(optimizer.param_groups),
            "planned_groups": len(module.plan.groups)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=4)
    result = run(parser.parse_args().epochs)
    print(f"{result['groups']} optimizer groups; trainable tensors per epoch: {result['trainable_per_epoch']}")
