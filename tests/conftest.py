"""Shared fixtures: tiny models and a way to describe parameters without a model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch
from torch import nn

from lrrules.model import ParamInfo


def params(*specs: Sequence[Any]) -> list[ParamInfo]:
    """ParamInfos from ``(name, shape, module[, requires_grad])`` tuples, in order."""
    out = []
    for i, spec in enumerate(specs):
        name, shape, module, *rest = spec
        out.append(ParamInfo(name, tuple(shape), module, bool(rest[0]) if rest else True, i))
    return out


class TinyNet(nn.Module):
    """conv1/bn1 stem, two stages, a head: the shape of a ResNet in 13 tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.layer2 = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x)).relu()
        x = self.layer2(self.layer1(x)).relu()
        return self.fc(x.mean((2, 3)))


class TiedLM(nn.Module):
    """An embedding whose weight is also the output projection's (tied weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.embed(x)))


@pytest.fixture
def tiny() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def tied() -> TiedLM:
    torch.manual_seed(0)
    return TiedLM()
