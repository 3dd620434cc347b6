"""The ``lrrules`` command line. It parses arguments, calls the library, prints, and maps errors to
exit codes, here and nowhere else:

    0  the rule file resolves cleanly against the model
    1  it resolves, but some parameters are unmatched or in conflict (listed on stdout)
    2  the rule file, the model or the command line is invalid (the reason on stderr)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import LrrulesError, RuleFileError

EXIT_OK, EXIT_PROBLEMS, EXIT_INVALID = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lrrules",
        description="Per-parameter learning rates and weight decay from a checked, declarative rule file.",
        epilog="exit codes: 0 clean, 1 unmatched or conflicting parameters, 2 invalid rule file, model or usage",
    )
    parser.add_argument("--version", action="version", version=f"lrrules {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    resolve = commands.add_parser(
        "resolve",
        help="resolve a rule file against a model and print the optimizer groups",
        description="Resolve RULES against a timm model (built on the meta device, random weights, nothing "
        "downloaded) and print the optimizer groups, then every unmatched or conflicting parameter.",
        epilog="example: lrrules resolve examples/resnet18-frozen-backbone.yaml --model resnet18 --num-classes 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    resolve.add_argument("rules", metavar="RULES", help="the rule file (YAML, or JSON by its .json name)")
    resolve.add_argument("--model", required=True, metavar="NAME", help="a timm model name, e.g. resnet18")
    resolve.add_argument("--num-classes", type=int, metavar="N", help="the classifier's size (timm's num_classes)")
    resolve.add_argument("--format", choices=("table", "json"), default="table", help="output format (table)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (``sys.argv[1:]`` by default); returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _resolve(args)
    except LrrulesError as exc:
        # A rule-file error already starts with its file:line:col, like a compiler's.
        print(exc if isinstance(exc, RuleFileError) else f"lrrules: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _resolve(args: argparse.Namespace) -> int:
    from .language import load
    from .model import build
    from .report import to_json, to_table

    rules = load(args.rules)
    model = build(args.model, num_classes=args.num_classes)
    plan = rules.resolve(model)
    if args.format == "json":
        print(to_json(plan))
    else:
        print(to_table(plan, title=f"{args.rules} on {args.model}"))
    return EXIT_OK if plan.ok else EXIT_PROBLEMS


def run() -> None:
    """Entry point of the ``lrrules`` script."""
    sys.exit(main())
