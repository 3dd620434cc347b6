"""Several optimizers as one (schedulers, Lightning, the HF Trainer and DCP take one): what
:func:`lrrules.build` returns for a file with ``optimizers:``. ``param_groups`` and ``state`` are read
from the inner optimizers at each access, never copied: an inner ``load_state_dict`` replaces that
optimizer's group dicts, and a scheduler must set ``group["lr"]`` in the dict the inner one reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

import torch

from .errors import ResumeError, UsageError


class CombinedState(MutableMapping[torch.Tensor, Any]):
    """``CombinedOptimizer.state``: each tensor's entry lives in the state of the optimizer that owns it.

    ``state[p]`` reads (and, as torch's ``defaultdict`` does, creates) or writes the owner's entry,
    read afresh each time; a tensor no combined optimizer holds is a ``KeyError``, never an entry
    planted in the first optimizer's state (which its ``state_dict()`` could not save).
    """

    def __init__(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        self._optimizers = optimizers
        self._owners: dict[torch.Tensor, torch.optim.Optimizer] = {}

    def _owner(self, param: torch.Tensor) -> torch.optim.Optimizer:
        if isinstance(param, torch.Tensor) and param not in self._owners:  # again if a group was added
            self._owners = {p: o for o in self._optimizers.values() for g in o.param_groups for p in g["params"]}
        if not isinstance(param, torch.Tensor) or param not in self._owners:
            raise KeyError(param)
        return self._owners[param]

    def __getitem__(self, param: torch.Tensor) -> Any:
        return self._owner(param).state[param]

    def __setitem__(self, param: torch.Tensor, value: Any) -> None:
        self._owner(param).state[param] = value

    def __delitem__(self, param: torch.Tensor) -> None:
        del self._owner(param).state[param]

    def __contains__(self, param: object) -> bool:
        return any(param in o.state for o in self._optimizers.values())

    def get(self, param: torch.Tensor, default: Any = None) -> Any:
        return next((o.state[param] for o in self._optimizers.values() if param in o.state), default)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for optimizer in self._optimizers.values():
            yield from list(optimizer.state)

    def __len__(self) -> int:
        return sum(len(o.state) for o in self._optimizers.values())


class CombinedGroups(list[dict[str, Any]]):
    """The combined optimizer's groups, read afresh: the inner optimizers' own dicts (their ``lr`` may
    be set), in a list that refuses to grow or shrink (that would change a copy nobody steps)."""

    def _refuse(self, *_: Any, **__: Any) -> None:
        raise UsageError("CombinedOptimizer.param_groups is read from its optimizers: add a group to one of them "
                         "(optimizer.optimizers[NAME].add_param_group), then build a new CombinedOptimizer")

    # One refusal for list's methods, whose signatures differ (mypy's assignment error).
    append = extend = insert = remove = pop = clear = __delitem__ = __iadd__ = _refuse  # type: ignore[assignment]


class CombinedOptimizer(torch.optim.Optimizer):
    """One optimizer over several named ones; ``optimizers`` maps each name to its optimizer.
    ``param_groups`` lists the inner optimizers' current group dicts, optimizer by optimizer;
    assigning a list of as many groups hands each optimizer its share.

    >>> combined = CombinedOptimizer({"muon": Muon(mats), "adamw": AdamW(rest)})  # doctest: +SKIP
    >>> combined.step(); combined.zero_grad()                                                          # doctest: +SKIP
    """

    def __init__(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        if not optimizers:
            raise UsageError("CombinedOptimizer needs at least one optimizer")
        self.optimizers = dict(optimizers)
        # torch's __init__ checks the groups (a tensor in two optimizers is refused) into a list
        # that is dropped once it is done: from then on both attributes read the inner optimizers.
        self._building: list[dict[str, Any]] | None = []
        super().__init__([g for o in self.optimizers.values() for g in o.param_groups], {})
        self._building = None
        self._state = CombinedState(self.optimizers)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        if self._building is not None:
            return self._building
        return CombinedGroups(g for o in self.optimizers.values() for g in o.param_groups)

    @param_groups.setter
    def param_groups(self, groups: list[dict[str, Any]]) -> None:
        if self._building is not None:
            self._building = groups
            return
        groups = list(groups)
        sizes = [len(o.param_groups) for o in self.optimizers.values()]
        if len(groups) != sum(sizes):
            raise UsageError(f"CombinedOptimizer.param_groups takes {sum(sizes)} groups (its optimizers' "
                             f"{', '.join(map(str, sizes))}), not {len(groups)}")
        for optimizer, size in zip(self.optimizers.values(), sizes):
            optimizer.param_groups, groups = groups[:size], groups[size:]

    @property  # type: ignore[override]  # torch declares state a plain attribute
    def state(self) -> CombinedState:
        return self._state

    @state.setter
    def state(self, value: Any) -> None:
        if self._building is None:  # torch's __init__ sets an empty one; nothing else may
            raise UsageError("CombinedOptimizer.state is its optimizers' state; set optimizer.optimizers[NAME].state")

    def __getstate__(self) -> dict[str, Any]:
        # torch's pickles defaults, state and param_groups alone, none of which rebuilds this one.
        return {"optimizers": self.optimizers, "defaults": self.defaults}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__({**state, "_building": None, "_state": CombinedState(state["optimizers"])})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if self._building is not None:
            return super().add_param_group(param_group)
        # A group added here alone would be in no optimizer that steps: its parameters would never train.
        raise UsageError("add a param group to one of the combined optimizers (optimizer.optimizers[NAME]."
                         "add_param_group), then build a new CombinedOptimizer")

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
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
        """torch's layout over every inner group (ids numbered across the optimizers, as DCP reads
        them) and each optimizer's type, through this optimizer's state-dict hooks (the layout record)."""
        for pre in self._optimizer_state_dict_pre_hooks.values():
            pre(self)
        state: dict[Any, Any] = {}
        groups: list[dict[str, Any]] = []
        ids: dict[tuple[int, Any], int] = {}  # (optimizer, its id) -> ours
        for k, optimizer in enumerate(self.optimizers.values()):
            part = optimizer.state_dict()
            for group in part["param_groups"]:
                groups.append({**group, "params": [ids.setdefault((k, i), len(ids)) for i in group["params"]]})
            state.update({ids[k, i]: v for i, v in part["state"].items()})
        result: dict[str, Any] = {"state": state, "param_groups": groups,
                                  "types": {n: type(o).__name__ for n, o in self.optimizers.items()}}
        for post in self._optimizer_state_dict_post_hooks.values():
            result = post(self, result) or result
        return result

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Hand each optimizer its share of what :meth:`state_dict` saved (its groups, in order, and
        their state), after this optimizer's pre-hooks (the layout check) have seen it."""
        state = dict(state_dict)
        for pre in self._optimizer_load_state_dict_pre_hooks.values():
            state = pre(self, state) or state
        groups, saved = state.get("param_groups"), state.get("state", {})
        sizes = [len(o.param_groups) for o in self.optimizers.values()]
        if not isinstance(groups, list) or len(groups) != sum(sizes) or not isinstance(saved, Mapping):
            found = len(groups) if isinstance(groups, list) else "no"
            raise ResumeError(f"this state dict holds {found} param groups, this optimizer {sum(sizes)} "
                              f"({', '.join(f'{n}: {k}' for n, k in zip(self.optimizers, sizes))}); it was saved "
                              "from another combination")
        types = state.get("types") or {}
        for name, optimizer in self.optimizers.items():  # SGD's momentum_buffer in AdamW would load and mislead
            if name in types and types[name] != type(optimizer).__name__:
                raise ResumeError(f"optimizer '{name}' was {types[name]} when this state was saved and is "
                                  f"{type(optimizer).__name__} now; its state cannot be carried over")
        for optimizer, size in zip(self.optimizers.values(), sizes):
            mine, groups = groups[:size], groups[size:]
            ids = {i for g in mine for i in g["params"]}
            optimizer.load_state_dict({"state": {k: v for k, v in saved.items() if k in ids}, "param_groups": mine})
        for post in self._optimizer_load_state_dict_post_hooks.values():
            post(self)
