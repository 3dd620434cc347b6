"""The words of the rule language: the formula variables and their descriptions, the keys an option
may not take, and the default names. Plain data, no pydantic: the models (:mod:`lrrules.fields`,
:mod:`lrrules.entries`, :mod:`lrrules.language`) check against these tables, the JSON Schema and the
docs quote them, and the resolver and schedules read them.

>>> VARIABLES["depth"]
'num_layers - 1 - layer: 0 nearest the output'
"""

from __future__ import annotations

#: Shapes have dimensions ``dim0`` .. ``dim{MAX_DIMS - 1}`` as formula variables.
MAX_DIMS = 8
#: The variables every formula may read; a rule's named regex groups are added to these.
VARIABLES = {
    "base_lr": "the lr in `defaults`",
    "base_weight_decay": "the weight_decay in `defaults`",
    "layer": "the parameter's layer index, 0 nearest the input (see `layers`)",
    "num_layers": "how many layers the model has under `layers`",
    "depth": "num_layers - 1 - layer: 0 nearest the output",
    "index": "the parameter's position in registration order, from 0",
    "num_tensors": "how many parameter tensors the model has",
    "ndim": "the parameter's number of dimensions",
    "numel": "the parameter's number of elements",
    "fan_in": "inputs per output: dim1 x the kernel size for 2-D and more (Linear: in_features), 1 for 1-D",
    "fan_out": "outputs per input: dim0 x the kernel size for 2-D and more (Linear: out_features), dim0 for 1-D",
    **{f"dim{k}": f"the parameter's shape[{k}] (an error on a tensor with fewer dimensions)" for k in range(MAX_DIMS)},
    # muP (mup's InfShape), read off the tensor's base shape: the same architecture at the base width.
    "ninf": "muP: how many of the parameter's dimensions differ from its base shape (its width dimensions)",
    "width_mult": "muP: size / base size of the last width dimension (a matrix's fan-in), 1 if none; "
                  "undefined for more than two",
}
#: The help text of every field that takes a number or a formula.
FORMULA_HELP = (
    "A number, or a formula string over the variables "
    + ", ".join(v for v in VARIABLES if not v.startswith("dim"))
    + ", dim0 ... dim" + str(MAX_DIMS - 1)
    + " and the rule's named regex groups, with + - * / // % **, comparisons, `x if c else y`, "
    "min max abs round floor ceil sqrt exp log cos sin, pi and e."
)
#: The keys of a rule or modifier that hold a number or a formula.
SETTING_FIELDS = ("lr", "lr_mult", "weight_decay", "weight_decay_mult")
#: Keys of a param group that lrrules, the optimizer's caller or torch's and timm's schedulers own,
#: with what to use instead: set from a rule file, each would be overwritten or would change what a
#: scheduler computes (issue 21). Adagrad's ``initial_accumulator_value`` is an option: only the
#: ``initial_`` keys that schedulers write are here.
RESERVED_OPTIONS = {
    "lr": "set it with the rule's lr or lr_mult (the base: defaults.lr)",
    "weight_decay": "set it with weight_decay or weight_decay_mult",
    "params": "lrrules puts the matched tensors there",
    "param_names": "lrrules puts the matched names there",
    "name": "lrrules names each group after the entries that made it",
    "lr_scale": "timm's schedulers multiply the group's lr by it, so it would scale lr twice; use lr_mult "
                "(plan.param_groups(lr_scale=True) writes it for timm's convention)",
    "initial_lr": "torch's and timm's schedulers record each group's lr there when they start and schedule from "
                  "it, resumed from their state dict; set lr or lr_mult",
    "initial_weight_decay": "timm's schedulers of weight decay record each group's weight decay there; set "
                            "weight_decay or weight_decay_mult",
    "max_lr": "OneCycleLR and CyclicLR write it from their max_lr argument: pass max_lr=plan.group_lrs()",
    "min_lr": "OneCycleLR writes it from max_lr / final_div_factor; give the scheduler its arguments",
    "base_momentum": "OneCycleLR and CyclicLR write it from their base_momentum argument",
    "max_momentum": "OneCycleLR and CyclicLR write it from their max_momentum argument",
    "swa_lr": "SWALR writes it from its swa_lr argument",
}


#: The optimizer type a rule file gets when it names none.
DEFAULT_TYPE = "AdamW"
#: The variables an ``lr_schedule`` formula reads (besides the file's vars).
SCHEDULE_VARIABLES = {
    "step": "the optimizer steps taken so far, from 0",
    "epoch": "step // steps_per_epoch (given to lrrules.rule_scheduler)",
    "total_steps": "the run's length in steps (given to lrrules.rule_scheduler)",
}
#: The name of the target of every parameter no rule or modifier routes: the single ``optimizer:``.
DEFAULT_OPTIMIZER = "default"
