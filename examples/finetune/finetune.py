"""Fine-tuning with little data, five ways, on a real (small) task: does discriminative fine-tuning
keep what pre-training learned?

    python examples/finetune/finetune.py                  # 5 seeds, 40 epochs, into a new temporary folder
    python examples/finetune/finetune.py --write-results  # the same, rewriting the tracked results/
    python examples/finetune/finetune.py --smoke          # a few epochs, one seed: the CI check

A small CNN is pre-trained on the digits 0-4 of scikit-learn's bundled 8x8 digits (shipped with the
package: nothing is downloaded), then fine-tuned on the digits 5-9 with only 10 images per class,
with a new head, under each rule file in rules/: one lr for everything, a frozen backbone, the
discriminative rates with two decays (one file, its `decay` var set two ways), and gradual unfreezing. It writes RESULTS.md,
results.json and accuracy.png: target test accuracy per epoch per strategy, mean and spread over the
seeds, whichever strategy wins, and the run's wall time (`seconds` in results.json). They go to a new
temporary folder (its path is printed) unless --out names one; only --write-results replaces the
tracked results/ that the README quotes, so running the example never changes the repository.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import lrrules

HERE = Path(__file__).parent
#: The tracked results the README quotes: written only with --write-results.
RESULTS = HERE / "results"
# name: (rule file, vars set on it) -- the two discriminative rows are one file, swept with `vars`
STRATEGIES: dict[str, tuple[str, dict[str, float]]] = {
    "single lr": ("single-lr.yaml", {}),
    "frozen backbone": ("frozen-backbone.yaml", {}),
    "discriminative, decay 0.3": ("discriminative.yaml", {"decay": 0.3}),
    "discriminative, decay 0.7": ("discriminative.yaml", {"decay": 0.7}),
    "discriminative 0.3 + gradual unfreezing": ("gradual-unfreezing.yaml", {"decay": 0.3}),
}


class SmallCNN(nn.Module):
    """Three convolutions and a head, for 8x8 digits."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.conv3(x)).mean((2, 3))
        return self.head(x)


def tasks(shots: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target)
    source = labels < 5
    target = ~source
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for digit in range(5, 10):
        where = torch.nonzero(labels == digit).flatten()
        where = where[torch.randperm(len(where), generator=generator)]
        train.append(where[:shots])
        test.append(where[shots:])
    train_idx, test_idx = torch.cat(train), torch.cat(test)
    assert target[train_idx].all() and target[test_idx].all()
    return {
        "source": (images[source], labels[source]),
        "target_train": (images[train_idx], labels[train_idx] - 5),
        "target_test": (images[test_idx], labels[test_idx] - 5),
    }


def accuracy(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    model.eval()
    with torch.no_grad():
        right = (model(data[0]).argmax(1) == data[1]).float().mean().item()
    model.train()
    return right


def pretrain(data: tuple[torch.Tensor, torch.Tensor], epochs: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = SmallCNN()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x, y = data
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.state_dict()


def finetune(rules: lrrules.RuleSet, weights: dict[str, torch.Tensor], data: dict[str, Any], epochs: int,
             seed: int) -> list[float]:
    torch.manual_seed(seed + 1)
    model = SmallCNN()
    model.load_state_dict({k: v for k, v in weights.items() if not k.startswith("head.")}, strict=False)
    optimizer, plan = lrrules.build(rules, model)
    x, y = data["target_train"]
    curve = []
    for epoch in range(epochs):
        if plan.phases:
            plan.apply_phase(epoch=epoch)
        for batch in torch.randperm(len(x)).split(10):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
        curve.append(accuracy(model, data["target_test"]))
    return curve


def run(seeds: int, epochs: int, pretrain_epochs: int, shots: int, out: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    started = time.perf_counter()
    curves: dict[str, list[list[float]]] = {name: [] for name in STRATEGIES}
    source_accuracy = []
    for seed in range(seeds):
        data = tasks(shots, seed)
        weights = pretrain(data["source"], pretrain_epochs, seed)
        check = SmallCNN()
        check.load_state_dict(weights)
        source_accuracy.append(accuracy(check, data["source"]))
        for name, (file, overrides) in STRATEGIES.items():
            rules = lrrules.load(HERE / "rules" / file, overrides=overrides)
            curves[name].append(finetune(rules, weights, data, epochs, seed))
    summary = {}
    for name, runs in curves.items():
        final = [r[-1] for r in runs]
        best = [max(r) for r in runs]
        summary[name] = {"final_mean": statistics.mean(final), "final_sd": statistics.pstdev(final),
                         "best_mean": statistics.mean(best)}
    results = {"seeds": seeds, "epochs": epochs, "pretrain_epochs": pretrain_epochs, "shots_per_class": shots,
               "source_accuracy": statistics.mean(source_accuracy), "summary": summary, "curves": curves,
               "seconds": round(time.perf_counter() - started, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "RESULTS.md").write_text(report(results))
    plot(curves, out / "accuracy.png")
    return results


def report(results: dict[str, Any]) -> str:
    lines = [
        "# Fine-tuning with little data: five strategies",
        "",
        f"Made by `python examples/finetune/finetune.py --write-results` in {results['seconds']:.0f} s: a small CNN "
        "pre-trained on the digits 0-4 "
        f"({results['pretrain_epochs']} epochs, source accuracy {results['source_accuracy']:.1%}), fine-tuned "
        f"with a new head on the digits 5-9 from {results['shots_per_class']} images per class for "
        f"{results['epochs']} epochs, {results['seeds']} seeds. Target test accuracy:",
        "",
        "| strategy | rule file (and vars) | final accuracy (mean ± sd) | best epoch (mean) |",
        "| --- | --- | --- | --- |",
    ]
    ranked = sorted(results["summary"].items(), key=lambda kv: -kv[1]["final_mean"])
    for name, s in ranked:
        file, overrides = STRATEGIES[name]
        sets = "".join(f" --set {k}={v}" for k, v in overrides.items())
        lines.append(f"| {name} | rules/{file}{sets} | {s['final_mean']:.1%} ± {s['final_sd']:.1%} | "
                     f"{s['best_mean']:.1%} |")
    lines += ["", "![target accuracy per epoch](accuracy.png)", ""]
    return "\n".join(lines)


def plot(curves: dict[str, list[list[float]]], path: Path) -> None:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib is not installed; no plot (pip install 'lrrules[plot]')")
        return
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    axis = fig.subplots()
    for name, runs in curves.items():
        epochs = range(1, len(runs[0]) + 1)
        mean = [statistics.mean(r[e - 1] for r in runs) for e in epochs]
        spread = [statistics.pstdev(r[e - 1] for r in runs) for e in epochs]
        axis.plot(epochs, mean, label=name)
        axis.fill_between(epochs, [m - s for m, s in zip(mean, spread)], [m + s for m, s in zip(mean, spread)],
                          alpha=0.15)
    axis.set_xlabel("fine-tuning epoch")
    axis.set_ylabel("target test accuracy")
    axis.legend(loc="lower right")
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--shots", type=int, default=10, help="target training images per class")
    parser.add_argument("--smoke", action="store_true", help="one seed, a few epochs: checks the script")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="DIR", help="write the results here (default: a new temporary folder)")
    where.add_argument("--write-results", action="store_true",
                       help=f"write the results to {RESULTS}, the tracked files the README quotes")
    args = parser.parse_args()
    if args.smoke and args.write_results:  # the tracked results are the full run's, which the README quotes
        parser.error("--smoke writes a few epochs' results; leave out --write-results (or --smoke)")
    if args.smoke:
        args.seeds, args.epochs, args.pretrain_epochs = 1, 3, 2
    out = RESULTS if args.write_results else Path(args.out or tempfile.mkdtemp(prefix="lrrules-finetune-"))
    results = run(args.seeds, args.epochs, args.pretrain_epochs, args.shots, out)
    for name, s in results["summary"].items():
        print(f"{name:>40}: final {s['final_mean']:.1%} ± {s['final_sd']:.1%}")
    print(f"wrote {out / 'RESULTS.md'}, results.json and accuracy.png ({results['seconds']} s)")


if __name__ == "__main__":
    main()
