"""Checking a rule file's optimizer and its options without importing torch or timm: the options
each optimizer takes come from :mod:`lrrules.optimizer_table`, and the values torch refuses when it
constructs an optimizer (a negative ``eps``, ``betas`` outside ``[0, 1)``, SGD's ``nesterov``
without momentum) are checked by torch's own rules. A name the table lacks is left to torch.
"""

from __future__ import annotations

import ast
import inspect
import numbers
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import Location, OptimizerError, did_you_mean
from .optimizer_table import GENERATED_WITH, OPTIONS, TIMM, TORCH, UNAVAILABLE
from .vocabulary import DEFAULT_TYPE

if TYPE_CHECKING:
    from .language import RuleSet

Loc = tuple[str | int, ...]


class Known(NamedTuple):
    """An optimizer the table knows: its options (``None``: any keyword), whether they are known
    at all (timm's that need a package), and whether it is torch's (whose value checks apply)."""

    options: Mapping[str, Any] | None
    available: bool
    torch: bool


def known(name: str) -> Known | None:
    """What the table knows of ``name`` (a torch.optim class name, else a timm optimizer name), or ``None``.

    >>> known("AdamW").options["betas"]
    (0.9, 0.999)
    """
    entry = TORCH.get(name, TIMM.get(name.lower(), UNAVAILABLE - 1))
    if entry == UNAVAILABLE - 1:
        return None
    if entry == UNAVAILABLE:
        return Known(None, False, False)
    return Known(None if entry is None else decode(OPTIONS[entry]), True, name in TORCH)


def decode(text: str) -> dict[str, Any]:
    """An optimizer's options from the table's text (``name#`` a number, ``name=0.9,0.999`` numbers
    in a tuple, ``name`` else): a number's default as 0 (torch's own for SGD's momentum and dampening,
    which the nesterov check reads), a tuple as written, any other as ``None``.

    >>> decode("lr# betas=0.9,0.999 foreach")
    {'lr': 0, 'betas': (0.9, 0.999), 'foreach': None}
    """
    out: dict[str, Any] = {}
    for word in text.split():
        name, tuple_, values = word.partition("=")
        if tuple_:
            out[name] = tuple(ast.literal_eval(v) for v in values.split(",") if v)
        else:
            out[name.rstrip("#")] = 0 if name.endswith("#") else None
    return out


def options_of(factory: Any) -> dict[str, Any] | None:
    """The options a constructor takes, with their defaults; ``None`` for ``**kwargs``.

    >>> options_of(lambda params, lr=0.1, betas=(0.9, 0.99): None)
    {'lr': 0.1, 'betas': (0.9, 0.99)}
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return None
    return {name: "<required>" if p.default is p.empty else _plain(p.default)
            for name, p in signature.parameters.items() if name not in ("self", "params")
            and p.kind is not p.VAR_POSITIONAL}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)) or _numbers(value):
        return value
    return ...


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _numbers(value: Any) -> bool:
    return isinstance(value, tuple) and all(_number(v) for v in value)


def type_location(ruleset: RuleSet) -> Location:
    """Where the file names its optimizer (its ``optimizer.type`` value)."""
    return _locate(ruleset, ("optimizer", "type")) if ruleset.optimizer else Location(ruleset.path)


def _locate(ruleset: RuleSet, loc: Loc, key: bool = False) -> Location:
    source = ruleset._source
    return source.locate(loc, key=key) if source is not None else Location(ruleset.path)


def check(ruleset: RuleSet) -> list[str] | None:
    """Check the file's optimizer and options from the table: the notes on what could not be checked,
    or ``None`` where the table lacks the name (torch decides). Raises :class:`OptimizerError` at the
    option key or value at fault."""
    name = ruleset.optimizer.type if ruleset.optimizer else DEFAULT_TYPE
    found = known(name)
    if found is None:
        return None
    if not found.available:
        return [f"{type_location(ruleset)}: the options of timm's '{name}' are not checked: it needs a package or "
                "CUDA to be known; `lrrules.build` checks them where it runs"]
    if found.options is not None:
        check_options(ruleset, name, found.options, torch_rules=found.torch)
    return []


def check_names(ruleset: RuleSet) -> list[tuple[Loc, str]]:
    """Judge each optimizer ``type`` of the file (:func:`named_types`) without torch: one that surely
    names no optimizer (:func:`names_optimizer`) raises :class:`OptimizerError` at its value, with
    "did you mean"; those only torch can judge are returned with their places.

    >>> check_names(lrrules.loads("version: 1\\ndefaults: {lr: 0.1}\\noptimizer: {type: AdamWW}\\nrules: []"))  # doctest: +SKIP
    Traceback (most recent call last):
    lrrules.errors.OptimizerError: <rules>:3:20: optimizer type 'AdamWW' names no optimizer (did you mean 'AdamW', ...?); ...
    """
    unjudged = []
    for loc, name in named_types(ruleset):
        verdict = names_optimizer(name)
        if verdict is False:
            raise OptimizerError(f"optimizer type '{name}' names no optimizer{did_you_mean(name, [*TORCH, *TIMM], n=3)}; "
                                 "use a torch.optim class name such as AdamW or SGD, or a timm optimizer name",
                                 _locate(ruleset, loc))
        if verdict is None:
            unjudged.append((loc, name))
    return unjudged


def named_types(ruleset: RuleSet) -> list[tuple[Loc, str]]:
    """Each optimizer ``type`` the file names, with its place, ``optimizer:`` then ``optimizers:``."""
    named: list[tuple[Loc, str]] = [(("optimizer", "type"), ruleset.optimizer.type)] if ruleset.optimizer else []
    return named + [(("optimizers", key, "type"), spec.type) for key, spec in ruleset.optimizers.items()]


def names_optimizer(name: str) -> bool | None:
    """Whether ``name`` names an optimizer: ``True`` where the table knows it (or an imported torch
    has it), ``False`` where it surely does not, ``None`` where that cannot be known without torch.

    The table is complete for the torch and timm it was generated from (tests/test_signatures.py
    keeps it so), so a name it lacks is refused where those versions are installed, or where torch
    is imported and lacks it too. Elsewhere (no torch, as under the pre-commit hook, or another
    version) it may be a newer torch's: a warning, and torch decides where it runs. The versions
    are read from the packages' metadata, and only for a name the table lacks.

    >>> names_optimizer("AdamW"), names_optimizer("AdamWW")   # torch 2.14.1 and timm 1.0.31 installed
    (True, False)
    """
    if known(name) is not None:
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(getattr(torch.optim, name, None), type):
        return True
    timm_same = installed("timm") in (None, GENERATED_WITH["timm"])  # no timm: no timm name can be built
    torch_same = torch is not None or installed("torch") == GENERATED_WITH["torch"]
    return False if timm_same and torch_same else None


def installed(package: str) -> str | None:
    """The installed version of ``package`` (``None``: not installed), without importing it: the
    ``Version:`` line of its metadata alone, as ``importlib.metadata.version`` parses the whole file
    as an email first (a third of a cached command's time for five libraries).

    >>> installed("no-such-package-x") is None
    True
    """
    from importlib import metadata

    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return None
    for line in (dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "").splitlines():
        if not line:  # the headers end at the first blank line
            break
        if line.startswith("Version:"):
            return line[len("Version:"):].strip()
    return dist.version


def option_values(ruleset: RuleSet) -> list[tuple[Loc, str, Any]]:
    """Every option the file sets, with its place: ``(("defaults", "eps"), "eps", 1e-8)``, ..."""
    return [(loc + ("options", key) if loc != ("defaults",) else loc + (key,), key, value)
            for loc, options in _option_sets(ruleset) for key, value in options.items()]


def _option_sets(ruleset: RuleSet) -> list[tuple[Loc, Mapping[str, Any]]]:
    """The defaults' options and each rule's and modifier's, with the entry's place."""
    sets: list[tuple[Loc, Mapping[str, Any]]] = [(("defaults",), ruleset.defaults.options)]
    for kind, entries in (("rules", ruleset.rules), ("modifiers", ruleset.modifiers)):
        sets += [((kind, i), entry.options or {}) for i, entry in enumerate(entries)]
    return sets


def _where(loc: Loc, ruleset: RuleSet) -> str:
    entries = ruleset.rules if loc[0] == "rules" else ruleset.modifiers
    return "defaults" if loc[0] == "defaults" else f"{loc[0]} '{entries[int(loc[1])].name}'"


def check_options(ruleset: RuleSet, name: str, options: Mapping[str, Any], torch_rules: bool = True) -> None:
    """Check every option the file sets against ``options`` (name -> default): its name, its shape
    (a list where the default is a tuple of numbers, one number where it is a number) and, for torch's
    optimizers, the values torch refuses at construction. Raises :class:`OptimizerError`."""
    values = option_values(ruleset)
    for loc, key, _ in values:
        if key not in options:
            takes = ", ".join(sorted(set(options) - {"lr", "weight_decay"}))
            raise OptimizerError(f"option '{key}' (in {_where(loc, ruleset)}) is not an option of {name}"
                                 f"{did_you_mean(key, options)}; {name} takes: {takes}", _locate(ruleset, loc, key=True))
    for loc, key, value in values:
        default = options[key]
        if _numbers(default) and (not isinstance(value, list) or len(value) != len(default)):
            got = f"a list of {len(value)}" if isinstance(value, list) else repr(value)
            raise OptimizerError(f"option '{key}' of {name} takes a list of "
                                 f"{len(default)} numbers (such as {list(default)}), got {got}", _locate(ruleset, loc))
        if isinstance(value, list) and _number(default):
            raise OptimizerError(f"option '{key}' of {name} takes one number, not a list", _locate(ruleset, loc))
    if torch_rules:
        _check_values(ruleset, name, options, values)


#: Options torch's optimizers refuse below 0 when they are constructed, but where torch does not
#: check one an optimizer takes (tests/test_signatures.py compares with torch).
_NOT_NEGATIVE = ("eps", "momentum", "weight_decay", "lr_decay", "initial_accumulator_value")
_UNCHECKED = {("Muon", "eps")}
#: Options whose allowed range depends on the optimizer: (optimizer, option) -> [low, high].
_RANGES = {("Adadelta", "rho"): (0.0, 1.0), ("RMSprop", "alpha"): (0.0, float("inf"))}
#: Options that take one of a few words; torch checks them in the constructor only, and a group with
#: another word steps without a word (Muon: no shape factor at all).
_CHOICES = {("Muon", "adjust_lr_fn"): ("original", "match_rms_adamw")}


def _check_values(ruleset: RuleSet, name: str, options: Mapping[str, Any], values: list[tuple[Loc, str, Any]]) -> None:
    def refuse(loc: Loc, message: str) -> OptimizerError:
        # torch checks these ranges only for an optimizer's own settings and steps a param group
        # with any value; the message says whose range it is, not that torch said it.
        return OptimizerError(f"option {message} (outside the range {name} accepts for its own settings)",
                              _locate(ruleset, loc))

    for loc, key, value in values:
        if key in _NOT_NEGATIVE and (name, key) not in _UNCHECKED and _number(value) and value < 0:
            raise refuse(loc, f"'{key}' of {name} must be >= 0, got {value}")
        if (name, key) in _RANGES and _number(value):
            low, high = _RANGES[(name, key)]
            if not low <= value <= high:
                raise refuse(loc, f"'{key}' of {name} must be in [{low}, {high}], got {value}")
        if (name, key) in _CHOICES and value is not None and value not in _CHOICES[(name, key)]:
            words = _CHOICES[(name, key)]
            raise OptimizerError(f"option '{key}' of {name} takes one of {', '.join(map(repr, words))}, got {value!r}"
                                 f"{did_you_mean(str(value), words)}", _locate(ruleset, loc))
        if key == "betas" and isinstance(value, list):
            for i, beta in enumerate(value):
                if _number(beta) and not 0.0 <= beta < 1.0:
                    raise refuse(loc + (i,), f"'betas' of {name}: each must be in [0, 1), got {beta}")
    if "nesterov" in options and "dampening" in options and "momentum" in options:
        _check_nesterov(ruleset, name, options, refuse)


def _check_nesterov(ruleset: RuleSet, name: str, options: Mapping[str, Any], refuse: Any) -> None:
    """SGD refuses ``nesterov: true`` unless momentum > 0 and dampening = 0, for the settings it is
    built with (the defaults) and, as it would apply them, for each group that sets its own."""
    keys = ("nesterov", "momentum", "dampening")
    base = {k: options[k] for k in keys} | {k: v for k, v in ruleset.defaults.options.items() if k in keys}
    for loc, written in _option_sets(ruleset):
        own = {k: v for k, v in written.items() if k in keys}
        if loc != ("defaults",) and not own:
            continue
        settings = {**base, **own}
        if settings["nesterov"] is True and _number(settings["momentum"]) and _number(settings["dampening"]):
            if settings["momentum"] <= 0 or settings["dampening"] != 0:
                where = loc if loc == ("defaults",) else loc + ("options",)
                at = next((where + (k,) for k in keys if k in written), where)
                raise refuse(at, f"'nesterov' of {name} needs momentum > 0 and dampening = 0, got momentum "
                                 f"{settings['momentum']} and dampening {settings['dampening']}")
