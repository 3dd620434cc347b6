"""Lightning (not a dependency, imported only when called): the rule file's training phases as a callback."""

from __future__ import annotations

from typing import Any

from .errors import UsageError
from .plan import Plan


def phase_callback(plan: Plan) -> Any:
    """A Lightning ``Callback`` applying the plan's phases: those ``from_epoch`` as each training epoch
    starts, those ``from_step`` before each batch (at ``trainer.global_step``); a phase depends on the
    epoch or step alone, so a resumed run is in the right one.

    >>> trainer = Trainer(callbacks=[lrrules.lightning.phase_callback(plan)])    # doctest: +SKIP
    """
    try:
        from lightning.pytorch.callbacks import Callback
    except ImportError:
        try:
            # The older package's class of the same name: mypy sees two types where there is one role.
            from pytorch_lightning.callbacks import Callback  # type: ignore[assignment]
        except ImportError:
            raise UsageError("phase_callback needs Lightning: pip install 'lrrules[lightning]'") from None

    by_step = any(p.from_step is not None for p in plan.phases)

    class LrrulesPhases(Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            plan.apply_phase(epoch=trainer.current_epoch, step=trainer.global_step if by_step else None)

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if by_step:
                plan.apply_phase(epoch=trainer.current_epoch, step=trainer.global_step)

    return LrrulesPhases()
