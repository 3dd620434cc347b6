"""What a rule file's entries set: rules and modifiers (their lr, weight decay, options, routing
and schedule), the defaults, and the optimizers; formulas are compiled as they validate.

>>> Rule.model_validate({"name": "all", "match": "*", "lr_mult": "2 * depth"}).lr_mult.text
'2 * depth'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationInfo, \
    field_validator, model_validator
from pydantic_core import PydanticCustomError

from .errors import FormulaError, Pointer, did_you_mean
from .fields import (VAR_NAMES, VAR_VALUES, Flag, Matcher, Number, Strict, check_number, checked_formula,
                     in_text, matcher_groups, refuse, strict_number)
from .formula import CONSTANTS, FUNCTIONS, Formula, compile_formula
from .vocabulary import DEFAULT_TYPE, FORMULA_HELP, SCHEDULE_VARIABLES, RESERVED_OPTIONS, SETTING_FIELDS, VARIABLES

Setting = Annotated[Union[float, str], BeforeValidator(check_number),
                    Field(description=FORMULA_HELP, json_schema_extra={"ge": 0})]  # the schema's bound (language._bounds)


def _option_kind(value: Any) -> str | None:
    # A mapping has no kind: one error saying what an option may be, not one per number type.
    kinds = ((dict, None), (bool, "<bool>"), ((list, tuple), "<list>"), (type(None), "<none>"))
    return next((tag for kind, tag in kinds if isinstance(value, kind)), "<value>")


_NOT_A_MAPPING = dict(custom_error_type="option_mapping", custom_error_message=(
    "an option's value is a number, a word, true/false, null or a list, not a mapping "
    "(an option is written flat under defaults or a rule's options: `momentum: 0.9`)"))
_finite = functools.partial(check_number, negative=True)
OPTION_TAGS = frozenset({"<bool>", "<list>", "<none>", "<value>"})
# An option's value: a boolean, a list of numbers, null, or a number (in rules also a formula or a
# word), chosen by the input's type so that an error names only the one that applies.
_Bool = Annotated[bool, Tag("<bool>")]
_List = Annotated[list[Number], Tag("<list>")]
_None = Annotated[None, Tag("<none>")]
#: An option in rules: an integer stays an integer (``ns_steps: 5`` is not ``5.0``), a word that
#: names no variable is text (``proj_type: std``), anything else a formula.
OptionValue = Annotated[Union[_Bool, _List, _None, Annotated[
    Union[int, float, str], BeforeValidator(_finite),
    Field(description="A number (negative where the optimizer takes it), a word (an option's text value: "
          "proj_type: std), or a formula. " + FORMULA_HELP), Tag("<value>")]], Discriminator(_option_kind, **_NOT_A_MAPPING)]
#: An option in defaults: a number, kept an integer where it is one.
DefaultOption = Annotated[Union[_Bool, _List, _None, Annotated[Union[int, float], BeforeValidator(strict_number),
                                                                BeforeValidator(_finite), Tag("<value>")]],
                          Discriminator(_option_kind, **_NOT_A_MAPPING)]


def _no_reserved_keys(schema: dict[str, Any], cls: Any = None) -> None:
    # The schema refuses the keys the tool refuses as options (its fields aside).
    fields = set(getattr(cls, "model_fields", ()))
    schema["propertyNames"] = {"not": {"enum": sorted(set(RESERVED_OPTIONS) - fields)}}


class _Settings(Strict):
    """What a rule or modifier sets; each number may be a formula. ``name`` and ``match`` come first:
    a formula's names are checked against the match's regex groups, validated before it."""

    name: Annotated[str, Field(min_length=1, description="A unique name, shown in reports.")]
    match: Matcher | None = Field(None, description="Which parameters this entry applies to.")
    lr: Setting | None = Field(None, description="The lr, replacing base_lr. " + FORMULA_HELP)
    lr_mult: Setting | None = Field(None, description="A multiplier on base_lr. " + FORMULA_HELP)
    weight_decay: Setting | None = Field(None, description="The weight decay. " + FORMULA_HELP)
    weight_decay_mult: Setting | None = Field(None, description="A multiplier on base_weight_decay.")
    options: Annotated[dict[str, OptionValue], Field(json_schema_extra=_no_reserved_keys)] | None = Field(
        None, description="Other optimizer options for these parameters (momentum, betas, eps, ...).")
    freeze: Flag = Field(False, description="Take these parameters out of training (requires_grad=False).")
    optimizer: OptimizerName | None = Field(
        None, description="The name of an optimizer under the top-level `optimizers` that these parameters go to.")
    lr_schedule: str | None = Field(
        None, description="A formula of step, epoch, total_steps (and vars) scaling these parameters' lr over "
        "time; lrrules.rule_scheduler turns it into a scheduler (see docs/language.md).")
    remove: Flag = Field(False, description="In a file that extends another: drop the inherited entry of this name.")

    @field_validator(*SETTING_FIELDS, mode="after")
    @classmethod
    def _compile_setting(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        return checked_formula(value, _names(info))

    @field_validator("lr_schedule", mode="after")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        if value is not None:
            checked_formula(value, set(SCHEDULE_VARIABLES) | VAR_NAMES.get(), condition=True)
        return value

    @field_validator("options", mode="after")
    @classmethod
    def _compile_options(cls, value: dict[str, Any] | None, info: ValidationInfo) -> Any:
        _check_option_names(value or {})
        names = _names(info)
        return None if value is None else {k: _option_text(v, names, k) if isinstance(v, str) else v
                                           for k, v in value.items()}

    @model_validator(mode="after")
    def _one_of_each(self) -> _Settings:
        if self.remove:
            extra = sorted(self.model_fields_set - {"name", "remove"})
            if extra:
                raise PydanticCustomError("remove", "an entry with 'remove: true' only names what it removes; "
                                          "drop {fields}", {"fields": ", ".join(extra)})
            return self
        if self.lr is not None and self.lr_mult is not None:
            raise PydanticCustomError("settings", "give either lr or lr_mult, not both", {})
        if self.weight_decay is not None and self.weight_decay_mult is not None:
            raise PydanticCustomError("settings", "give either weight_decay or weight_decay_mult, not both", {})
        if self.freeze:
            given = [f for f in (*SETTING_FIELDS, "options", "optimizer", "lr_schedule") if getattr(self, f) is not None]
            if given:
                raise PydanticCustomError("settings", "freeze takes the parameters out of training, so {fields} "
                                          "would never apply; remove it", {"fields": " and ".join(given)})
        return self

    def formulas(self) -> Iterator[tuple[tuple[str, ...], Formula]]:
        """Each formula this entry holds, with its path inside the entry."""
        found: list[tuple[tuple[str, ...], Any]] = [((name,), getattr(self, name)) for name in SETTING_FIELDS]
        found += [(("options", key), value) for key, value in (self.options or {}).items()]
        yield from ((at, value) for at, value in found if isinstance(value, Formula))


def _names(info: ValidationInfo) -> set[str] | None:
    if "match" not in info.data:
        return None  # the match itself failed; its error is reported, and its groups are unknown
    return set(VARIABLES) | VAR_NAMES.get() | matcher_groups(info.data["match"])


#: A word an option takes as its text value (``std``, ``cholesky_qr``, ``adamw``): no formula.
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


def _option_text(text: str, names: set[str] | None, key: str) -> str | Formula:
    """An option's text: a word that names no variable (nor comes close to one: ``dpeth`` stays a
    formula, so its error says "did you mean 'depth'?") is the option's value as written; the
    rest is a formula, which may be negative (an option is no rate)."""
    if (names is not None and _WORD.match(text) and text not in names and text not in FUNCTIONS
            and text not in CONSTANTS and not did_you_mean(text, names, cutoff=0.8)):
        return text
    return checked_formula(text, names, key, negative=True)


def _check_option_names(keys: Any, at: Any = lambda i, key: Pointer((key,), key=True)) -> None:
    for i, key in enumerate(keys):
        if (why := RESERVED_OPTIONS.get(key)) is not None:
            raise refuse("option", "'{key}' is not an option here: {why}", at(i, key), key=key, why=why)


#: Keys other tools use for lr and weight decay: a mistake beside them, not an option.
_MISSPELT = {"learning_rate": "lr", "base_lr": "lr", "wd": "weight_decay", "decay": "weight_decay"}


class _WithOptions(BaseModel):
    """A mapping whose keys beyond its fields are optimizer options; a key that looks like one of
    its ``near`` fields (``typ``, ``weight_decy``) is a misspelling, not an option."""

    model_config = ConfigDict(extra="allow", frozen=True, json_schema_extra=_no_reserved_keys)
    near: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _no_misspelt_field(cls, data: Any) -> Any:
        for key in data if isinstance(data, dict) else ():  # before the values: `typ: SGD` is no number
            if isinstance(key, str) and key not in cls.model_fields and (
                    hint := did_you_mean(_MISSPELT.get(key, key), cls.near, cutoff=0.75)):
                raise refuse("option", "unknown key '{key}'{hint}", Pointer((key,), key=True), key=key, hint=hint)
        return data

    @model_validator(mode="after")
    def _options_are_options(self) -> _WithOptions:
        _check_option_names(self.model_extra or {})
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The optimizer options (every key but the fields), types kept."""
        return dict(self.model_extra or {})


class Rule(_Settings):
    """A claiming rule: every trainable parameter must be claimed by exactly one rule."""

    match: Matcher | None = Field(None, description="Which parameters this rule claims.")
    fallback: Flag = Field(False, description="Claims only the parameters no other rule claims.")
    overrides: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Names of rules this rule takes precedence over where both match "
        "(transitively); any other overlap stays a conflict. Never depends on the order in the file.")

    @model_validator(mode="after")
    def _match_or_fallback(self) -> Rule:
        if self.remove:
            return self
        if self.fallback and self.match is not None:
            raise PydanticCustomError("rule", "a fallback rule claims what no other rule claims; remove 'match'", {})
        if not self.fallback and self.match is None:
            raise PydanticCustomError("rule", "a rule needs 'match' (or 'fallback: true')", {})
        return self


class Modifier(_Settings):
    """A modifier: applies on top of whichever rule claimed a parameter; may overlap others."""

    match: Matcher | None = Field(None, description="Which parameters this modifier changes (required).")

    @model_validator(mode="after")
    def _needs_match(self) -> Modifier:
        if self.match is None and not self.remove:
            raise PydanticCustomError("modifier", "a modifier needs 'match'", {})
        return self


def _over_vars(value: Any) -> Any:
    """A formula in `defaults` (``lr: "lr"``, ``lr: "3 * base"``) reads only ``vars``; evaluated now."""
    if not isinstance(value, str):
        return value
    names = VAR_NAMES.get()
    if not names:
        return value  # no vars, so no formula: text here is a wrong type, said so by Number
    try:
        return compile_formula(value, names).evaluate(VAR_VALUES.get())
    except FormulaError as exc:
        raise in_text("formula", exc, "{message}; a formula in defaults reads only vars") from None


#: A number of `defaults`, or a formula over `vars` (so ``--set lr=3e-4`` sweeps the base lr).
VarsNumber = Annotated[Number, BeforeValidator(_over_vars, json_schema_input_type=Union[float, str])]


class Defaults(_WithOptions):
    """What every parameter starts from; any other key is an optimizer option (betas, eps, momentum, ...)."""

    lr: Annotated[VarsNumber, Field(gt=0, description="The base learning rate (base_lr); a number or a formula "
                                    "over vars.")]
    weight_decay: Annotated[VarsNumber, Field(ge=0, description="The base weight decay (base_weight_decay); a "
                                              "number or a formula over vars.")] = 0.0
    __pydantic_extra__: dict[str, DefaultOption]
    near = ("lr", "weight_decay")


class Optimizer(_WithOptions):
    """The optimizer build_optimizer makes; any other key is an option, as if written in `defaults`
    (``optimizer: {type: SGD, momentum: 0.9}``): the rule set moves it there."""

    type: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description="A torch.optim class name (AdamW, "
                               "SGD, ...), or a timm optimizer name where torch has none.")] = DEFAULT_TYPE
    __pydantic_extra__: dict[str, DefaultOption]
    near = ("type",)


OptimizerName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")]


def _any_option(value: Any) -> Any:
    # A value read by an optimizer keeps its type: ns_steps: 5 stays an int, a string stays a string.
    if isinstance(value, float):
        check_number(value, negative=True)
    if isinstance(value, list) and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise PydanticCustomError("option", "a list option holds numbers only", {})
    if isinstance(value, dict):
        raise PydanticCustomError("option", "an option is a number, a string, a boolean, null or a list of numbers", {})
    return value


class NamedOptimizer(_WithOptions):
    """One of several optimizers (``optimizers: {NAME: {type, lr, ...}}``): its values are the defaults
    of the parameters routed to it (``optimizer: NAME`` on a rule or modifier)."""

    type: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description=(
        "A torch.optim class name (Muon, AdamW, SGD, ...) or a timm optimizer name; a class the caller "
        "passes for this name (build(..., optimizers={NAME: cls})) replaces it."))]
    lr: Annotated[Number, Field(gt=0, description="base_lr of what is routed here (defaults.lr if absent).")] | None = (
        None)
    weight_decay: Annotated[Number, Field(ge=0, description="base_weight_decay of what is routed here.")] | None = None
    group_keys: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list, description="Keys the optimizer reads per param group without taking them in its "
        "constructor (timm Muon's use_fallback, LARS's lars_exclude): allowed in options, put in every group.")
    __pydantic_extra__: dict[str, Annotated[Union[bool, int, float, str, list[Union[int, float]], None],
                                            BeforeValidator(_any_option)]]

    @model_validator(mode="after")
    def _group_keys_are_options(self) -> NamedOptimizer:
        for key in self.model_extra or {}:
            if key in ("optimizer", "optimizers"):
                raise refuse("option", "'{key}' is not an option here", Pointer((key,), key=True), key=key)
        _check_option_names(self.group_keys, lambda i, key: Pointer(("group_keys", i)))
        return self
