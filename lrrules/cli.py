"""The ``lrrules`` command line. It parses arguments, calls the library, prints, and maps errors to
exit codes, here and nowhere else:

    0  clean: the rule file resolves against the model(s), or the diff is empty
    1  problems: unmatched or conflicting parameters (with --strict also unused rules and lr = 0),
       or parameters whose settings differ (diff)
    2  invalid: the rule file, the model, or the command line (the reason on stderr, no traceback)

Only what a command needs is imported: ``lrrules schema`` and ``lrrules check RULES`` without a
model never import torch or timm.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import LrrulesError, PlanProblemsError, RuleFileError, UsageError, printable

if TYPE_CHECKING:
    from .language import RuleSet
    from .plan import Plan
    from .sources import Model

EXIT_OK, EXIT_PROBLEMS, EXIT_INVALID = 0, 1, 2
FORMATS = ("table", "json", "yaml", "csv")


#: The exit code of a command whose reader went away (``| head``), as a shell reports SIGPIPE.
EXIT_PIPE = 128 + 13


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (``sys.argv[1:]`` by default); returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except LrrulesError as exc:
        # A rule-file error already starts with its file:line:col, like a compiler's.
        _complain(str(exc) if isinstance(exc, RuleFileError) else f"lrrules: error: {exc}")
        return exit_code(exc)
    except BrokenPipeError:
        # The reader closed the pipe (`lrrules params ... | head -2`): stop quietly, as Unix tools do.
        # Python would still flush stdout at exit and complain, so stdout goes to /dev/null.
        _discard_stdout()
        return EXIT_PIPE
    except OSError as exc:  # writing an output file (-o /missing/dir/x.json), or a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        _complain(f"lrrules: error: {where}{exc.strerror or exc}")
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130


def exit_code(exc: LrrulesError) -> int:
    """The exit code for an error: the one place the command line maps errors to codes.

    1 (``EXIT_PROBLEMS``): the rules are valid but leave parameters unmatched or in conflict.
    2 (``EXIT_INVALID``): anything else lrrules refuses (a bad rule file, model, optimizer, usage).
    """
    return EXIT_PROBLEMS if isinstance(exc, PlanProblemsError) else EXIT_INVALID


def _complain(text: str) -> None:
    try:
        print(printable(text, lines=True), file=sys.stderr)
    except BrokenPipeError:
        pass


def _discard_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout replaced by something without a descriptor
        pass


def run() -> None:
    """Entry point of the ``lrrules`` script."""
    sys.exit(main())


# --- commands ----------------------------------------------------------------------------------


def cmd_resolve(args: argparse.Namespace) -> int:
    from .report import plan_rows, plan_table, render

    rules = _rules(args.rules, args.set)
    model = _model(args)
    plan = _when(_resolve(rules, model), args)
    _print(render(args.format, plan.to_dict, lambda: plan_rows(plan, args.params),
                  lambda: plan_table(plan, f"{args.rules} on {model.label}", args.params, _unicode())))
    return EXIT_OK if plan.ok else EXIT_PROBLEMS


def cmd_params(args: argparse.Namespace) -> int:
    from .layers import assign
    from .report import param_rows, param_table, render

    model = _model(args)
    if args.layers is None and not model.ordered:  # no order to count layers in, and none asked for
        layers, count = [None] * len(model.params), 0
    else:
        layers, count = assign(_layers(args.layers or "module"), model.params, model.module, model.ordered)
    rows = param_rows(model.params, layers)
    data = {"model": model.label, "num_layers": count, "params": rows}
    _print(render(args.format, lambda: data, lambda: rows, lambda: param_table(rows, count)))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    rules = _rules(args.rules, args.set)
    failed = False
    if args.model:
        from .report import problems
        from .signatures import check as check_signature

        notes = check_signature(rules)  # from lrrules' table of optimizers: no torch import
        if notes is None:  # an optimizer the table does not know: torch itself decides
            from .optim import check_optimizer

            check_optimizer(rules)
        for note in notes or []:
            _complain(f"lrrules: note: {note}")
        for spec in args.model:
            model = _model(args, spec)
            plan = _resolve(rules, model)
            lines = problems(plan)
            if args.strict:
                lines += [f"strict: {w}" for w in plan.warnings()]
            if lines:
                failed = True
                _print(f"{args.rules} on {model.label}:")
                _print("\n".join(f"  {line}" for line in lines))
    return EXIT_PROBLEMS if failed else EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from .report import explain_text, explained, render

    rules = _rules(args.rules, args.set)
    model = _model(args)
    plan = _when(_resolve(rules, model), args)
    chosen = explained(plan, args.pattern)
    if not chosen:
        raise UsageError(f"no parameter of {model.label} matches '{args.pattern}'; "
                           f"see `lrrules params --model {model.label}`")
    def data() -> list[dict[str, Any]]:
        return [a.to_dict() for a in chosen]

    _print(render(args.format, data, data, lambda: explain_text(plan, chosen)))
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from .plan import diff_plans
    from .report import diff_table, render

    old_rules, new_rules = _rules(args.old, args.set), _rules(args.new, args.set)
    model = _model(args)
    changes = diff_plans(_when(_resolve(old_rules, model), args), _when(_resolve(new_rules, model), args))
    rows = [c.to_dict() for c in changes]
    _print(render(args.format, lambda: rows, lambda: rows, lambda: diff_table(changes, args.old, args.new)))
    return EXIT_PROBLEMS if changes else EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    import os

    from .loader import loads
    from .starter import starter

    model = _model(args)
    out = Path(args.output) if args.output else None
    schema = args.schema or _schema_near(out)
    text = starter(model.params, model.module, model.label, lr=args.lr, weight_decay=args.weight_decay,
                   layer_decay=args.layer_decay, head_mult=args.head_mult,
                   no_decay_norm_bias=args.no_decay_norm_bias, schema=schema)
    plan = _resolve(loads(text, str(out or "<init>")), model)
    if not plan.ok or plan.unused_rules:  # a starting file that does not resolve cleanly is our bug
        raise UsageError("the starting file does not resolve cleanly:\n  " + "\n  ".join(
            plan.problems() + plan.warnings()))
    for warning in plan.warnings():  # a layering too coarse for --layer-decay, names that look wrapped
        print(f"lrrules: warning: {warning}", file=sys.stderr)
    if out is None:
        _print(text.rstrip("\n"))
        return EXIT_OK
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    out.write_text(text)
    _complain(f"wrote {out} ({len(plan.groups)} groups); check it with: lrrules check {os.fspath(out)} "
              f"--model {model.label}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from .report import to_json, to_yaml

    rules = _rules(args.rules, args.set)
    data = rules.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    data = {"version": rules.version, **data}
    if rules.optimizer is not None:  # its type is a default, and an empty mapping would hide it
        data["optimizer"] = {"type": rules.optimizer.type}
    _print(to_json(data) if args.format == "json" else to_yaml(data).rstrip("\n"))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from .language import json_schema_text

    text = json_schema_text()
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot

    rules = _rules(args.rules, args.set)
    model = _model(args)
    written = plot(_resolve(rules, model), args.output, title=f"{args.rules} on {model.label}")
    _complain(f"wrote {written}")
    return EXIT_OK


# --- helpers -----------------------------------------------------------------------------------


def _rules(spec: str, sets: Sequence[str] = ()) -> RuleSet:
    from .loader import load, load_revision

    overrides = _overrides(sets)
    if ":" in spec and "\0" not in spec and not Path(spec).exists() and not spec.startswith(("/", "./")):
        return load_revision(spec, overrides)
    return load(spec, overrides)


def _overrides(sets: Sequence[str]) -> dict[str, float]:
    import json

    out: dict[str, float] = {}
    for pair in sets:
        name, sep, raw = pair.partition("=")
        try:
            value = json.loads(raw) if sep else None
        except (ValueError, RecursionError):
            value = None
        if not sep or not name.isidentifier() or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"--set takes name=number, got {pair!r}")
        out[name] = value
    return out


def _when(plan: Plan, args: argparse.Namespace) -> Plan:
    if getattr(args, "epoch", None) is None and getattr(args, "step", None) is None:
        return plan
    return plan.at(epoch=args.epoch, step=args.step)


def _model(args: argparse.Namespace, spec: str | None = None) -> Model:
    from .sources import open_model, parse_model_args

    name = spec if spec is not None else args.model
    return open_model(name, num_classes=args.num_classes, model_args=parse_model_args(args.model_arg))


def _resolve(rules: RuleSet, model: Model) -> Plan:
    from .resolve import resolve_params

    return resolve_params(rules, model.params, model.tensors, model.module, model.ordered)


def _layers(text: str) -> Any:
    from .language import BlocksLayers, ModuleLayers, TensorLayers, TimmLayers

    kind, _, level = text.partition(":")
    if kind == "blocks" and not level:
        return BlocksLayers(by="blocks")
    if kind == "tensor" and not level:
        return TensorLayers(by="tensor")
    if kind == "timm" and not level:
        return TimmLayers(by="timm")
    if kind == "module" and (not level or level.isdigit() and int(level) >= 1):
        return ModuleLayers(by="module", level=int(level or 1))
    raise UsageError(f"--layers takes tensor, module, module:N, timm or blocks, got {text!r}")


def _schema_near(out: Path | None) -> str:
    import os

    here = Path("schemas") / "lrrules.schema.json"
    if not here.is_file():
        return "lrrules.schema.json"
    base = (out.parent if out is not None else Path(".")).resolve()
    return Path(os.path.relpath(here.resolve(), base)).as_posix()


def _unicode() -> bool:
    try:
        "█▏".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _print(text: str) -> None:
    # Every human-readable line is escaped where it is made (report.py); this catches the rest:
    # no control character from a name, key or file name reaches the terminal. JSON and YAML
    # escape their own, so this changes nothing there.
    if text:
        print(printable(text, lines=True))


# --- the parser --------------------------------------------------------------------------------


def _command(commands: Any, name: str, run: Callable[[argparse.Namespace], int], summary: str,
             description: str, example: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=description, epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run)
    return parser


def _model_options(parser: argparse.ArgumentParser, many: bool = False, required: bool = True) -> None:
    parser.add_argument(
        "--model", required=required, metavar="M", action="append" if many else "store",
        help="a timm name (resnet18), torchvision:NAME, hf:PATH (a local config), package.module:factory, "
        "or a checkpoint (.safetensors, .safetensors.index.json, .pt, .pth; safetensors are read without importing "
        "torch)" + (" (repeatable)" if many else ""),
    )
    parser.add_argument("--num-classes", type=int, metavar="N", help="the classifier's size")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to the model's constructor (repeatable; VALUE is read as JSON if it can be)")


def _set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="NAME=NUMBER",
                        help="override one of the rule file's vars (repeatable)")


def _phase_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epoch", type=int, metavar="N", help="show the plan at this epoch of its training phases")
    parser.add_argument("--step", type=int, metavar="N", help="show the plan at this step of its training phases")


def _format_option(parser: argparse.ArgumentParser, choices: Sequence[str] = FORMATS) -> None:
    parser.add_argument("--format", choices=choices, default="table", help="output format (default: table)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lrrules",
        description="Per-parameter learning rates, weight decay and freezing from a checked, declarative "
        "rule file.",
        epilog="exit codes: 0 clean; 1 unmatched or conflicting parameters, or a non-empty diff; "
        "2 invalid rule file, model or usage",
    )
    parser.add_argument("--version", action="version", version=f"lrrules {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _command(commands, "resolve", cmd_resolve, "resolve a rule file against a model: the optimizer groups",
                 "Resolve RULES against a model (built on the meta device, nothing downloaded) and print "
                 "the optimizer groups, then every unmatched or conflicting parameter.",
                 "lrrules resolve examples/resnet18-discriminative.yaml --model resnet18 --num-classes 2")
    p.add_argument("rules", metavar="RULES", help="the rule file (YAML, or JSON by its .json name)")
    _model_options(p)
    _format_option(p)
    p.add_argument("--params", action="store_true", help="one row per parameter instead of per group")
    _set_option(p)
    _phase_options(p)

    p = _command(commands, "params", cmd_params, "list a model's parameters, to write rules against",
                 "List every parameter: name, shape, elements, owning module class, whether it trains, and "
                 "its layer index under --layers.",
                 "lrrules params --model vit_tiny_patch16_224 --layers timm")
    _model_options(p)
    p.add_argument("--layers", default=None, metavar="HOW",
                   help="how layers are counted: tensor, module, module:N, timm or blocks (default: module)")
    _format_option(p)

    p = _command(commands, "check", cmd_check, "the CI gate: silent and exit 0 when the rules are clean",
                 "Check RULES: alone (schema, regexes, formulas), and against each --model (unmatched and "
                 "conflicting parameters, the optimizer and its options). Prints nothing when clean. Against a "
                 "checkpoint (.safetensors, .safetensors.index.json) torch is never imported: the optimizer's "
                 "options are checked from lrrules' own table of torch's and timm's optimizers.",
                 "lrrules check rules.yaml --model resnet18 --model resnet50 --strict")
    p.add_argument("rules", metavar="RULES", help="the rule file")
    _model_options(p, many=True, required=False)
    p.add_argument("--strict", action="store_true", help="also fail on unused rules and on lr = 0")
    _set_option(p)

    p = _command(commands, "explain", cmd_explain, "why a parameter gets its settings",
                 "For each parameter matching PATTERN (a glob): the rules and modifiers that matched, the "
                 "regex groups captured, the layer, each formula with its variables filled in, and the result.",
                 "lrrules explain examples/resnet18-discriminative.yaml --model resnet18 'layer2.0.*'")
    p.add_argument("rules", metavar="RULES", help="the rule file")
    p.add_argument("pattern", metavar="PATTERN", help="a glob over parameter names")
    _model_options(p)
    _format_option(p, ("table", "json", "yaml"))
    _set_option(p)
    _phase_options(p)

    p = _command(commands, "diff", cmd_diff, "the parameters whose settings differ between two rule files",
                 "Resolve OLD and NEW against the model and list every parameter whose status, lr, weight "
                 "decay or options differ. OLD or NEW may be a git revision of a file: REV:path.",
                 "lrrules diff HEAD~1:rules.yaml rules.yaml --model resnet18")
    p.add_argument("old", metavar="OLD", help="the old rule file, or REV:path")
    p.add_argument("new", metavar="NEW", help="the new rule file, or REV:path")
    _model_options(p)
    _format_option(p)
    _set_option(p)
    _phase_options(p)

    p = _command(commands, "init", cmd_init, "write a starting rule file for a model",
                 "Write a rule file for the model that resolves cleanly: a fast head, optionally layer "
                 "decay over the rest and no weight decay for biases and norms.",
                 "lrrules init --model convnext_tiny --layer-decay 0.75 --no-decay-norm-bias -o rules.yaml")
    _model_options(p)
    p.add_argument("--lr", type=float, default=1e-3, help="the base lr (default: 0.001)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="the base weight decay (default: 0.05)")
    p.add_argument("--layer-decay", type=float, metavar="F", help="multiply the lr by F per layer from the head")
    p.add_argument("--head-mult", type=float, default=10.0, metavar="F", help="the head's lr multiplier (10)")
    p.add_argument("--no-decay-norm-bias", action="store_true", help="no weight decay for biases and norms")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of to stdout")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.add_argument("--schema", metavar="PATH", help="the JSON Schema's path or URL for the editor comment")

    p = _command(commands, "schema", cmd_schema, "print the JSON Schema of rule files",
                 "Print the JSON Schema of the rule language (the same as schemas/lrrules.schema.json).",
                 "lrrules schema -o lrrules.schema.json")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of to stdout")

    p = _command(commands, "plot", cmd_plot, "plot lr and weight decay per parameter (needs matplotlib)",
                 "Plot each parameter's lr (log scale) and weight decay in registration order, coloured by "
                 "rule. Needs the optional extra: pip install 'lrrules[plot]'.",
                 "lrrules plot examples/resnet18-discriminative.yaml --model resnet18 -o lr.png")
    p.add_argument("rules", metavar="RULES", help="the rule file")
    _model_options(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the image: .png, .svg or .pdf")
    _set_option(p)

    p = _command(commands, "show", cmd_show, "print a rule file flattened: extends resolved, vars set",
                 "Print RULES as lrrules reads it: the files it extends merged in, --set applied, "
                 "defaults left out. Needs no model.",
                 "lrrules show experiments/lr-sweep.yaml --set decay=0.8")
    p.add_argument("rules", metavar="RULES", help="the rule file")
    _set_option(p)
    p.add_argument("--format", choices=("yaml", "json"), default="yaml", help="output format (default: yaml)")
    return parser
