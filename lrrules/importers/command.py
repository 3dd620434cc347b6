"""``lrrules import`` and ``lrrules capture``: write the rule file, then verify it tensor by tensor.

Both print the per-tensor comparison of the original's groups with the written file's, and return
exit code 1 on any difference (lr, weight decay, options, frozen, optimizer; relative 1e-12).
Building the parser imports nothing heavy: torch comes with the run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from . import FORMATS

if TYPE_CHECKING:
    import torch


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="M", help="the model, any --model form of lrrules resolve")
    parser.add_argument("--num-classes", type=int, metavar="N", help="the classifier's size")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to the model's constructor (repeatable)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the rule file here (default: standard output)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``lrrules import FORMAT CONFIG --model M [-o out.yaml]``."""
    parser.add_argument("format", choices=sorted(FORMATS), help="the peer whose configuration CONFIG is")
    parser.add_argument("config", metavar="CONFIG", help="the peer's configuration file")
    parser.add_argument("--llrd", type=float, metavar="DECAY", help="hf: the usual layer-wise lr decay on top")
    _model_arguments(parser)


def add_capture_arguments(parser: argparse.ArgumentParser) -> None:
    """``lrrules capture SCRIPT:FUNC --model M [-o out.yaml]``."""
    parser.add_argument("function", metavar="SCRIPT:FUNC",
                        help="a Python file and a function in it taking the model and returning an optimizer "
                             "(or several, or param groups)")
    _model_arguments(parser)


def _model(args: argparse.Namespace) -> torch.nn.Module:
    import torch

    from ..sources import open_model, parse_model_args

    module = open_model(args.model, args.num_classes, parse_model_args(args.model_arg)).module
    if not isinstance(module, torch.nn.Module):
        raise UsageError(f"--model {args.model}: the original's groups need the model itself, not names and shapes")
    if any(p.is_meta for p in module.parameters()):  # built for names and shapes: optimizers need storage
        module.to_empty(device="cpu")
    return module


def _finish(text: str, original: Any, model: Any, args: argparse.Namespace) -> int:
    from ..capture import comparison, differences, rules_table, tensor_table

    with contextlib.redirect_stdout(sys.stderr):  # what the peer's libraries print stays out of the file
        expected = tensor_table(original, model)
        got = rules_table(text, _model(args), original)  # a fresh model: the file alone decides
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    print(comparison(expected, got), file=sys.stderr)
    wrong = differences(expected, got)
    for line in wrong:
        print(f"differs: {line}", file=sys.stderr)
    print(f"{len(expected) - len(wrong)} of {len(expected)} tensors the same", file=sys.stderr)
    return 1 if wrong else 0


def run(args: argparse.Namespace) -> int:
    """``lrrules import``: the rule file for the peer's config, verified against the peer's own groups."""
    from . import importer

    module = importer(args.format)
    with contextlib.redirect_stdout(sys.stderr):  # the peer's libraries may print (DeepSpeed does, on import)
        config = module.read(args.config)
        if args.llrd is not None:
            config = {**config, "llrd": args.llrd}
        model = _model(args)
        text, original = module.rules(config, model), module.peer(config, model)
    return _finish(text, original, model, args)


def run_capture(args: argparse.Namespace) -> int:
    """``lrrules capture``: the rule file for what a user's function builds, verified against it."""
    from ..capture import from_optimizer

    script, sep, name = args.function.rpartition(":")
    if not sep or not Path(script).is_file():
        raise UsageError(f"{args.function}: give SCRIPT:FUNC, a Python file and a function in it")
    spec = importlib.util.spec_from_file_location(Path(script).stem, script)
    if spec is None or spec.loader is None:
        raise UsageError(f"{script}: cannot be loaded as Python")
    code = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code)  # the user's own script, which the user asked to run
    function = getattr(code, name, None)
    if not callable(function):
        raise UsageError(f"{script} has no function {name!r}")
    with contextlib.redirect_stdout(sys.stderr):  # what the user's script prints stays out of the file
        model = _model(args)
        original = function(model)
        text = from_optimizer(original, model)
    return _finish(text, original, model, args)


#: The two commands as lrrules.cli's table holds them: function, summary, description, example,
#: what they take of cli's shared options (nothing: they add their own), and their arguments.
COMMANDS: dict[str, tuple[Any, ...]] = {
    "import": (run, "write a rule file from a peer's config, verified per tensor",
               "Write the rule file that gives the groups FORMAT's own code builds from CONFIG (MMEngine paramwise_cfg, "
               "timm train args, a first-match regex list, Hugging Face TrainingArguments, Axolotl), then compare both "
               "per tensor on the model; exit 1 on any difference.",
               "lrrules import timm args.yaml --model vit_small_patch16_224 -o rules.yaml", "", add_arguments),
    "capture": (run_capture, "the shortest rule file an existing optimizer's groups come to",
                "Run SCRIPT's FUNC(model), write the shortest rule file giving the groups of the optimizer it returns "
                "(formulas recovered where the lrs follow one), and compare both per tensor; exit 1 on any difference.",
                "lrrules capture train.py:make_optimizer --model resnet18 -o rules.yaml", "", add_capture_arguments),
}
