"""The ``lrrules`` command line: it parses arguments, calls the library, prints, and maps errors to
exit codes, here and nowhere else (0 clean, 1 problems, 2 invalid: the reason on stderr, never a
traceback). Only what a command needs is imported: ``check RULES`` without a model never imports torch.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import LrrulesError, PlanProblemsError, RuleFileError, UsageError, printable
from .importers.command import COMMANDS as PEER_COMMANDS

if TYPE_CHECKING:
    from .language import RuleSet
    from .plan import Plan
    from .sources import Model

EXIT_OK, EXIT_PROBLEMS, EXIT_INVALID = 0, 1, 2
EXIT_PIPE = 128 + 13  # the reader went away (``| head``), as a shell reports SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (``sys.argv[1:]`` by default); returns the exit code."""
    parser = _parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions: argcomplete answers and exits
        with contextlib.suppress(ImportError):
            import argcomplete

            argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except LrrulesError as exc:  # a rule-file error already starts with its file:line:col
        _complain(str(exc) if isinstance(exc, RuleFileError) else f"lrrules: error: {exc}")
        return exit_code(exc)
    except BrokenPipeError:  # `lrrules params | head -2`: quiet, as Unix tools are; Python's flush at exit too
        with contextlib.suppress(OSError, ValueError, AttributeError):  # a stdout without a descriptor
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except OSError as exc:  # writing an output file (-o /missing/dir/x.json), or a full disk
        _complain(f"lrrules: error: {f'{exc.filename}: ' if exc.filename else ''}{exc.strerror or exc}")
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130


def exit_code(exc: LrrulesError) -> int:
    """The one place errors map to codes: 1 for a :class:`PlanProblemsError`, 2 for any other."""
    return EXIT_PROBLEMS if isinstance(exc, PlanProblemsError) else EXIT_INVALID


def _complain(text: str) -> None:
    with contextlib.suppress(BrokenPipeError):
        print(printable(text, lines=True), file=sys.stderr)


def run() -> None:
    """Entry point of the ``lrrules`` script."""
    sys.exit(main())


# --- commands ----------------------------------------------------------------------------------


def _cmd_resolve(args: argparse.Namespace) -> int:
    from .lint import conflict_hints
    from .report import plan_rows, plan_table
    from .tables import render

    rules, model, plan = _plan(args)
    _print(render(args.format, plan.to_dict, lambda: plan_rows(plan, args.params),
                  lambda: plan_table(plan, f"{args.rules} on {model.label}", args.params, _unicode(), _width(args),
                                     conflict_hints(rules, plan.conflicts))))
    return EXIT_OK if plan.ok else EXIT_PROBLEMS


def _cmd_params(args: argparse.Namespace) -> int:
    from .layers import assign
    from .report import param_rows, param_table
    from .tables import render

    model = _model(args)
    layers: list[int | None] = [None] * len(model.params)
    count = 0
    if args.layers is not None or model.ordered:  # a checkpoint's tensors have no order to count layers in
        layers, count = assign(_layers(args.layers or "module"), model.params, model.module, model.ordered)
    rows = param_rows(model.params, layers)
    data = {"model": model.label, "num_layers": count, "params": rows}
    _print(render(args.format, lambda: data, lambda: rows, lambda: param_table(rows, count, _width(args))))
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from .check import check, parse_overrides

    opened = functools.cache(lambda spec: _model(args, spec))  # each model built once, for every file
    overrides = parse_overrides(args.set)
    found = [f for spec in args.rules for f in check(spec, args.model or (), strict=args.strict, overrides=overrides,
                                                     base_model=args.base_model, open_model=opened,
                                                     cache=not args.no_cache)]
    if not found:  # clean, the usual answer: the report module is not even imported
        _print("[]" if args.format == "json" else "")
        return EXIT_OK
    from .report import findings_github, findings_json, findings_text

    if args.format == "text":
        err, out = findings_text(found)
    else:
        err = "\n".join(f.text() for f in found if f.level == "note")
        out = (findings_github if args.format == "github" else findings_json)(found)
    if err:
        _complain(err)
    _print(out)
    return max(f.exit_code for f in found)


def _cmd_explain(args: argparse.Namespace) -> int:
    from .check import optimizer_types
    from .explain import explain_rows, explain_text, explained
    from .lint import modifier_hints
    from .tables import render

    rules, model, plan = _plan(args)
    chosen = explained(plan, args.pattern)
    if not chosen:
        raise UsageError(f"no parameter of {model.label} matches '{args.pattern}'; "
                         f"see `lrrules params --model {model.label}`")
    types = optimizer_types(rules)
    rows = lambda: explain_rows(plan, chosen, types)  # noqa: E731
    _print(render(args.format, rows, rows, lambda: explain_text(plan, chosen, modifier_hints(rules), types)))
    return EXIT_OK


def _cmd_diff(args: argparse.Namespace) -> int:
    from .check import changes
    from .explain import diff_summary, diff_table
    from .tables import render

    (old_rules, model, old_plan), (new_rules, _, new_plan) = _plan(args, args.old), _plan(args, args.new)
    found = changes(old_rules, new_rules, old_plan, new_plan)
    summary = diff_summary(found, old_plan, new_plan) if args.summary else None
    rows = summary if summary is not None else [c.to_dict() for c in found]
    _print(render(args.format, lambda: rows, lambda: rows,
                  lambda: diff_table(found, args.old, args.new, summary, _width(args), _unicode())))
    return EXIT_PROBLEMS if found else EXIT_OK


def _cmd_init(args: argparse.Namespace) -> int:
    from .language import json_schema_text
    from .starter import checked_starter, schema_reference

    model = _model(args, cache=False)  # the starter reads the module itself (its classifier)
    out = Path(args.output) if args.output else None
    schema, beside = schema_reference(out, args.schema)
    text, plan = checked_starter(model, str(out or "<init>"), lr=args.lr, weight_decay=args.weight_decay,
                                 layer_decay=args.layer_decay, head_mult=args.head_mult,
                                 no_decay_norm_bias=args.no_decay_norm_bias, schema=schema)
    for warning in plan.warnings():  # a layering too coarse for --layer-decay, names that look wrapped
        _complain(f"lrrules: warning: {warning}")
    if out is None:
        _print(text.rstrip("\n"))
        return EXIT_OK
    _write(out, text, args.force)
    if beside is not None and not beside.exists():
        _write(beside, json_schema_text(), True)
        _complain(f"wrote {beside}, the JSON Schema the file's first line points to")
    _complain(f"wrote {out} ({len(plan.groups)} groups); check it with: lrrules check {out} --model {model.label}")
    _complain("editors that use the YAML language server (VS Code's YAML extension, yamlls in Neovim, "
              "JetBrains IDEs) read its `# yaml-language-server: $schema=` line: completion and checks as you type")
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    from .check import parse_overrides
    from .loader import load
    from .report import flattened
    from .tables import to_json, to_yaml

    data = flattened(load(args.rules, parse_overrides(args.set)))
    _print(to_json(data) if args.format == "json" else to_yaml(data).rstrip("\n"))
    return EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    from .language import json_schema_text

    _write(Path(args.output), json_schema_text(), True) if args.output else sys.stdout.write(json_schema_text())
    return EXIT_OK


def _cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot

    _writable(Path(args.output), force=True)
    _, model, plan = _plan(args)
    title = f"{args.rules} on {model.label}" + (f" at {plan.when}" if plan.phase_frozen or plan.when else "")
    _complain(f"wrote {plot(plan, args.output, title=title)}")
    return EXIT_OK


def _cmd_completion(args: argparse.Namespace) -> int:
    try:
        from argcomplete.shell_integration import shellcode
    except ImportError:
        raise UsageError("shell completion needs argcomplete: pip install 'lrrules[completion]'") from None
    _print(shellcode(["lrrules"], shell=args.shell).rstrip("\n"))
    return EXIT_OK


# --- completions (argcomplete calls them with the word so far) ---------------------------------


def _model_names(prefix: str, **_: Any) -> list[str]:
    """--model: the timm names starting with ``prefix``, and the other sources' prefixes."""
    sources = [s for s in ("torchvision:", "hf:") if s.startswith(prefix)]
    return sources if ":" in prefix or "/" in prefix or "." in prefix else \
        sources + [name for name in _timm_names() if name.startswith(prefix)]


def _timm_names() -> list[str]:
    """timm's model names, listed once per timm version in the model cache (importing timm takes seconds)."""
    from importlib import metadata

    from .sources.cache import cache_dir

    try:
        listed = cache_dir() / f"timm-{metadata.version('timm')}-models.txt"
        return listed.read_text(encoding="utf-8").split()
    except metadata.PackageNotFoundError:
        return []
    except OSError:
        import timm

        names: list[str] = timm.list_models()
    with contextlib.suppress(OSError):  # a read-only cache: the next TAB lists them again
        listed.parent.mkdir(parents=True, exist_ok=True)
        listed.write_text("\n".join(names), encoding="utf-8")
    return names


def _rule_files(prefix: str, **kwargs: Any) -> list[str]:
    """RULES: the shipped presets (``lrrules:NAME``), then files."""
    from argcomplete.completers import FilesCompleter

    presets = [f"lrrules:{p.stem}" for p in sorted((Path(__file__).parent / "presets").glob("*.yaml"))]
    return [p for p in presets if p.startswith(prefix)] + list(FilesCompleter()(prefix, **kwargs))


def _set_names(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """--set: ``NAME=`` for each var of the rule files named before it."""
    from .loader import load

    specs = getattr(parsed_args, "rules", None) or [getattr(parsed_args, k, None) for k in ("old", "new")]
    names: dict[str, None] = {}
    for spec in [specs] if isinstance(specs, str) else specs:
        with contextlib.suppress(LrrulesError, OSError):  # a file not written yet completes nothing
            names |= dict.fromkeys(load(spec).vars) if spec else {}
    return [f"{name}=" for name in names if name.startswith(prefix)]


# --- arguments and output ----------------------------------------------------------------------


def _model(args: argparse.Namespace, spec: str | None = None, cache: bool = True) -> Model:
    from .sources import cached_open_model, parse_model_args

    return cached_open_model(spec if spec is not None else args.model, args.num_classes,
                             parse_model_args(args.model_arg), use_cache=cache and not args.no_cache,
                             cache_factory=args.cache_factory, quiet=args.quiet)


def _plan(args: argparse.Namespace, spec: str | None = None) -> tuple[RuleSet, Model, Plan]:
    """The rule file (``spec`` or RULES), the model, the plan (muP's base shapes from --base-model) at --epoch or --step."""
    from .check import parse_overrides, resolve_model
    from .loader import load
    from .variables import base_shapes

    rules, model = load(spec or args.rules, parse_overrides(args.set)), _model(args)
    if args.base_model is not None and not hasattr(args, "base_shapes"):  # diff resolves twice
        args.base_shapes = base_shapes(_model(args, args.base_model).params)
    plan = resolve_model(rules, model, getattr(args, "base_shapes", None))
    if args.epoch is None and args.step is None:
        return rules, model, plan
    if not plan.phases:  # nothing would change: say so rather than print the plan as if it had
        option = "--epoch" if args.epoch is not None else "--step"
        raise UsageError(f"{plan.source or 'the rule file'} has no phases; {option} shows the plan at a point "
                         "of a file's training `phases:`, so leave it out here")
    return rules, model, plan.at(epoch=args.epoch, step=args.step)


def _layers(text: str) -> Any:
    from .fields import BlocksLayers, ModuleLayers, TensorLayers, TimmLayers

    kind, _, level = text.partition(":")
    if kind in ("blocks", "tensor", "timm") and not level:
        return {"blocks": BlocksLayers, "tensor": TensorLayers, "timm": TimmLayers}[kind](by=kind)
    # A level is a module depth: a few digits (thousands would reach Python's int-conversion limit).
    if kind == "module" and (not level or level.isascii() and level.isdigit() and len(level) <= 6 and int(level) >= 1):
        return ModuleLayers(by="module", level=int(level or 1))
    raise UsageError(f"--layers takes tensor, module, module:N, timm or blocks, got {text!r}")


def _write(out: Path, text: str, force: bool) -> None:
    _writable(out, force)
    try:  # the OSError of write() or close() names no file: say which one
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageError(f"{out}: cannot write: {exc.strerror or exc}") from None


def _writable(out: Path, force: bool) -> None:
    """``-o`` takes a regular file or none: a FIFO would block until read; a device or directory is never meant."""
    kinds = {"is_dir": "a directory", "is_fifo": "a named pipe", "is_char_device": "a device",
             "is_block_device": "a device", "is_socket": "a socket"}
    kind = next((name for test, name in kinds.items() if getattr(out, test)()), None)
    if kind is not None or (out.exists() and not out.is_file()):
        raise UsageError(f"{out} is {kind or 'not a regular file'}; -o takes a regular file path (absent, or with "
                         "--force an existing file)")
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")


def _width(args: argparse.Namespace) -> int | None:
    """The terminal's width for tables; ``None`` (no limit) with --wide, or on a pipe or a file (for the
    tools that read it) unless ``COLUMNS`` says one, as argparse and rich read it."""
    if getattr(args, "wide", False) or not (sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit()):
        return None
    return max(40, shutil.get_terminal_size().columns)


def _unicode() -> bool:
    """Whether bars may use block characters: the output encoding takes them and the locale is a
    UTF-8 one (Python runs LC_ALL=C as UTF-8 itself, PEP 538, but the terminal behind it may not)."""
    locale_name = next((os.environ[k] for k in ("LC_ALL", "LC_CTYPE", "LANG") if os.environ.get(k)), "")
    try:
        "█▏".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return not locale_name or "utf8" in locale_name.lower().replace("-", "")


def _print(text: str) -> None:
    # Lines are escaped where report.py makes them; this catches the rest: no control character from
    # a name, key or file name reaches the terminal (JSON and YAML escape their own).
    if text:
        text = printable(text, lines=True)
        encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        with contextlib.suppress(LookupError):
            try:
                text.encode(encoding)
            except UnicodeEncodeError:  # PYTHONIOENCODING=ascii, a latin-1 terminal: a name as \u65e5
                text = text.encode(encoding, "backslashreplace").decode(encoding)
        print(text)


# --- the parser --------------------------------------------------------------------------------


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps the description to the terminal; keeps the epilog's example as written, to be copied."""

    def add_text(self, text: str | None) -> None:
        if text is not None and text.startswith("example:\n"):
            self._add_item(lambda t: t + "\n", [text])
        else:
            super().add_text(text)


_Option = tuple[str, str, dict[str, Any]]  # flags, help, argparse keywords
_FLAG: dict[str, Any] = {"action": "store_true"}
_N: dict[str, Any] = {"type": int, "metavar": "N"}
_F: dict[str, Any] = {"type": float, "metavar": "F"}
_MODEL = ("a timm name (resnet18), torchvision:NAME, hf:PATH (a local config) or hf:ORG/NAME (a hub id, config only), "
          "package.module:factory, or a checkpoint (.safetensors, .safetensors.index.json, .pt, .pth; safetensors are "
          "read without importing torch)")
_MODEL_OPTIONS: list[_Option] = [
    ("--base-model", "the model at muP's base width, any --model form (lrrules:mup)", {"metavar": "M"}),
    ("--num-classes", "the classifier's size", _N),
    ("--model-arg", "passed to the model's constructor (repeatable; VALUE is read as JSON if it can be)",
     {"action": "append", "default": [], "metavar": "KEY=VALUE"}),
    ("--no-cache", "build the model, neither reading nor writing the model cache ($XDG_CACHE_HOME/lrrules)", _FLAG),
    ("--cache-factory", "cache a package.module:factory model too (not by default: its code is not in the key)", _FLAG),
    ("-q --quiet", "no status line on stderr while a slow model builds (never shown on a pipe anyway)", _FLAG)]
_WIDE = ("--wide", "tables at full width in a terminal too (fitted to it otherwise: short headers, a narrower bar, "
         "secondary columns left out, long names cut); a pipe or a file gets full width unless COLUMNS is set", _FLAG)
_TABLE = ("--format", "output format (default: table)", {"choices": ("table", "json", "yaml", "csv"), "default": "table"})
#: The arguments each word of a command's "takes" adds, as (flags, help, argparse keywords).
_TAKES: dict[str, list[_Option]] = {
    "rules": [("rules", "the rule file (YAML, or JSON by its .json name)", {"metavar": "RULES", "completer": _rule_files})],
    "files": [("rules", "the rule files ('-' reads one from stdin)",
               {"metavar": "RULES", "nargs": "+", "completer": _rule_files})],
    "model": [("--model", _MODEL, {"required": True, "metavar": "M", "completer": _model_names}), *_MODEL_OPTIONS],
    "models": [("--model", _MODEL + " (repeatable)", {"action": "append", "metavar": "M", "completer": _model_names}),
               *_MODEL_OPTIONS],
    "table": [_TABLE, _WIDE],  # table3: the first three formats
    "table3": [(_TABLE[0], _TABLE[1], {**_TABLE[2], "choices": ("table", "json", "yaml")}), _WIDE],
    "set": [("--set", "override one of the rule file's vars (repeatable)",
             {"action": "append", "default": [], "metavar": "NAME=NUMBER", "completer": _set_names})],
    "phases": [("--epoch", "show the plan at this epoch of its training phases", _N),
               ("--step", "show the plan at this step of its training phases", _N)]}
_OUTPUT = ("-o --output", "write here instead of to stdout", {"metavar": "FILE"})


def _add(p: argparse.ArgumentParser, flags: str, help: str, options: dict[str, Any]) -> None:
    action = p.add_argument(*flags.split(), help=help, **{k: v for k, v in options.items() if k != "completer"})
    if "completer" in options:
        setattr(action, "completer", options["completer"])  # argcomplete reads it


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lrrules", description="Per-parameter learning rates, weight decay and freezing from a checked, "
        "declarative rule file.", epilog="exit codes: 0 clean; 1 unmatched or conflicting parameters, or a "
        "non-empty diff; 2 invalid rule file, model or usage")
    parser.add_argument("--version", action="version", version=f"lrrules {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (run, summary, description, example, takes, own) in {**_COMMANDS, **PEER_COMMANDS}.items():
        p = commands.add_parser(name, help=summary, description=description, epilog=f"example:\n  {example}",
                                formatter_class=_HelpFormatter)
        p.set_defaults(run=run)
        for option in [option for word in takes.split() for option in _TAKES[word]] + ([] if callable(own) else own):
            _add(p, *option)
        own(p) if callable(own) else None  # import and capture add their own (lrrules.importers.command)
    return parser


#: Each command: its function, summary, description, example, what it takes (words of _TAKES), its own arguments.
_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str, str, str, str, list[Any]]] = {
    "resolve": (_cmd_resolve, "resolve a rule file against a model: the optimizer groups",
                "Resolve RULES against a model (built on the meta device, nothing downloaded) and print the optimizer "
                "groups, then every unmatched or conflicting parameter.",
                "lrrules resolve examples/resnet18-discriminative.yaml --model resnet18 --num-classes 2",
                "rules model table set phases", [("--params", "one row per parameter instead of per group", _FLAG)]),
    "params": (_cmd_params, "list a model's parameters, to write rules against",
               "List every parameter: name, shape, elements, owning module class, whether it trains, and its layer "
               "index under --layers.", "lrrules params --model vit_tiny_patch16_224 --layers timm", "model table",
               [("--layers", "how layers are counted: tensor, module, module:N, timm or blocks (default: module)",
                 {"metavar": "HOW"})]),
    "check": (_cmd_check, "the CI gate: silent and exit 0 when the rules are clean",
              "Check RULES alone (schema, regexes, formulas, a file that trains nothing, a decay-only rule where a "
              "modifier was meant) or against each --model (unmatched and conflicting parameters, rules that claim "
              "nothing on every model, the optimizer and its options; against a checkpoint without importing torch). "
              "Prints nothing when clean.",
              "lrrules check examples/resnet18-discriminative.yaml --model resnet18 --model resnet50 --format github",
              "files models set", [("--strict", "also fail on unused rules and on lr = 0", _FLAG),
                                   ("--format", "text (default), github (GitHub Actions annotations) or json (a list "
                                    "of findings)", {"choices": ("text", "github", "json"), "default": "text"})]),
    "explain": (_cmd_explain, "why a parameter gets its settings",
                "For each parameter matching PATTERN (a glob): the rules and modifiers that matched, the regex groups "
                "captured, the layer, each formula with its variables filled in, and the result.",
                "lrrules explain examples/resnet18-discriminative.yaml --model resnet18 'layer2.0.*'",
                "rules model table3 set phases", [("pattern", "a glob over parameter names", {"metavar": "PATTERN"})]),
    "diff": (_cmd_diff, "the parameters whose settings differ between two rule files",
             "Resolve OLD and NEW against the model and list every parameter whose status, lr, weight decay or "
             "options differ. OLD or NEW may be a git revision of a file: REV:path.",
             "lrrules diff examples/resnet18-discriminative.yaml examples/resnet18-frozen-backbone.yaml "
             "--model resnet18 --summary", "model table set phases",
             [("old", "the old rule file, or REV:path", {"metavar": "OLD", "completer": _rule_files}),
              ("new", "the new rule file, or REV:path", {"metavar": "NEW", "completer": _rule_files}),
              ("--summary", "one row per rule and setting (with the count and first names) instead of per parameter",
               _FLAG)]),
    "init": (_cmd_init, "write a starting rule file for a model",
             "Write a rule file for the model that resolves cleanly: a fast head, optionally layer decay over the "
             "rest and no weight decay for biases and norms.",
             "lrrules init --model convnext_tiny --layer-decay 0.75 --no-decay-norm-bias -o rules.yaml", "model",
             [("--lr", "the base lr (default: 0.001)", {"type": float, "default": 1e-3}),
              ("--weight-decay", "the base weight decay (default: 0.05)", {"type": float, "default": 0.05}),
              ("--layer-decay", "multiply the lr by F per layer from the head", _F),
              ("--head-mult", "the head's lr multiplier (10)", {**_F, "default": 10.0}),
              ("--no-decay-norm-bias", "no weight decay for biases and norms", _FLAG), _OUTPUT,
              ("--force", "overwrite FILE if it exists", _FLAG),
              ("--schema", "the JSON Schema's path or URL for the editor comment", {"metavar": "PATH"})]),
    "schema": (_cmd_schema, "print the JSON Schema of rule files",
               "Print the JSON Schema of the rule language (the same as schemas/lrrules.schema.json).",
               "lrrules schema -o lrrules.schema.json", "", [_OUTPUT]),
    "plot": (_cmd_plot, "plot lr and weight decay per parameter (needs matplotlib)",
             "Plot each parameter's lr (log scale) and weight decay in registration order, coloured by rule. Needs "
             "the optional extra: pip install 'lrrules[plot]'.",
             "lrrules plot examples/resnet18-discriminative.yaml --model resnet18 -o lr.png", "rules model set phases",
             [("-o --output", "the image: .png, .svg or .pdf", {"required": True, "metavar": "FILE"})]),
    "completion": (_cmd_completion, "print the shell completion script",
                   "Print the completion script for bash, zsh or fish, generated from this parser by argcomplete "
                   "(subcommands, options, timm model names, presets, --set vars). Needs: pip install "
                   "'lrrules[completion]'.", 'eval "$(lrrules completion bash)"   # in ~/.bashrc', "",
                   [("shell", "the shell", {"choices": ("bash", "zsh", "fish")})]),
    "show": (_cmd_show, "print a rule file flattened: extends resolved, vars set",
             "Print RULES as lrrules reads it: the files it extends merged in, --set applied, defaults left out. "
             "Needs no model.", "lrrules show examples/bert-layerwise-decay.yaml --set decay=0.9", "rules set",
             [("--format", "output format (default: yaml)", {"choices": ("yaml", "json"), "default": "yaml"})]),
}
