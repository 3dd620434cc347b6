"""Several optimizers as one: what :func:`lrrules.build` returns for a file with ``optimizers:``.

torch's own Muon documentation builds two optimizers by hand and steps both; schedulers, Lightning
and the Hugging Face Trainer each take one. :class:`CombinedOptimizer` is a
``torch.optim.Optimizer`` whose ``param_groups`` are its optimizers' groups themselves (the same
dicts, in the plan's group order), so a scheduler that sets ``group["lr"]`` sets it in the optimizer
that reads it; ``step``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` go to each.

>>> optimizer, plan = lrrules.build("muon.yaml", model)        # doctest: +SKIP
>>> optimizer.optimizers["muon"]                                # doctest: +SKIP
Muon (...)
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .errors import ResumeError, UsageError


class CombinedOptimizer(torch.optim.Optimizer):
    """One optimizer over several named ones; ``optimizers`` maps each name to its optimizer.

    >>> combined = CombinedOptimizer({"muon": Muon(mats), "adamw": AdamW(rest)})  # doctest: +SKIP
    >>> combined.step(); combined.zero_grad()                                                          # doctest: +SKIP
    """

    def __init__(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        if not optimizers:
            raise UsageError("CombinedOptimizer needs at least one optimizer")
        self.optimizers = dict(optimizers)
        self._building = True
        # The same group dicts, not copies: an lr a scheduler writes is the lr the optimizer reads.
        super().__init__([g for o in self.optimizers.values() for g in o.param_groups], {})
        self._building = False
        self.state = ChainMap(*(o.state for o in self.optimizers.values()))  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "CombinedOptimizer(" + ", ".join(f"{n}={type(o).__name__}" for n, o in self.optimizers.items()) + ")"

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if self._building:
            super().add_param_group(param_group)
            return
        # A group added here alone would be in no optimizer that steps: its parameters would never train.
        raise UsageError("add a param group to one of the combined optimizers (optimizer.optimizers[NAME]."
                         "add_param_group), then build a new CombinedOptimizer")

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Evaluate ``closure`` once (with gradients), then step every optimizer."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.optimizers.values():
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """``{"optimizers": {name: state_dict}}``, through this optimizer's state-dict hooks (the layout record)."""
        for pre in self._optimizer_state_dict_pre_hooks.values():
            pre(self)
        state: dict[str, Any] = {"optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                                 "types": {n: type(o).__name__ for n, o in self.optimizers.items()}}
        for post in self._optimizer_state_dict_post_hooks.values():
            state = post(self, state) or state
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load what :meth:`state_dict` saved into each optimizer, after this optimizer's pre-hooks
        (the layout check) have seen it."""
        state = dict(state_dict)
        for pre in self._optimizer_load_state_dict_pre_hooks.values():
            state = pre(self, state) or state
        saved = state.get("optimizers")
        if not isinstance(saved, Mapping) or set(saved) != set(self.optimizers):
            found = sorted(saved) if isinstance(saved, Mapping) else "none"
            raise ResumeError(f"this state dict holds optimizers {found}, this one {sorted(self.optimizers)}; "
                              "it was saved from another combination")
        types = state.get("types") or {}
        for name, optimizer in self.optimizers.items():
            # Another optimizer's moments (SGD's momentum_buffer into AdamW) load without a word and
            # fail, or mislead, at the next step.
            if name in types and types[name] != type(optimizer).__name__:
                raise ResumeError(f"optimizer '{name}' was {types[name]} when this state was saved and is "
                                  f"{type(optimizer).__name__} now; its state cannot be carried over")
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(saved[name])
        for post in self._optimizer_load_state_dict_post_hooks.values():
            post(self)
