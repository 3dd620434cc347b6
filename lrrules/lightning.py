"""Lightning: a callback that applies the rule file's training phases at the start of every epoch.

    trainer = Trainer(callbacks=[lrrules.lightning.phase_callback(plan)])

Lightning is not a dependency of lrrules; this module imports it only when called.
"""

from __future__ import annotations

from typing import Any

from .errors import UsageError
from .plan import Plan


def phase_callback(plan: Plan) -> Any:
    """A Lightning ``Callback`` that calls ``plan.apply_phase(epoch=trainer.current_epoch)`` when each
    training epoch starts; since a phase depends on the epoch alone, a run resumed from a checkpoint
    at epoch N starts in the state of one that ran to it."""
    try:
        from lightning.pytorch.callbacks import Callback
    except ImportError:
        try:
            from pytorch_lightning.callbacks import Callback  # type: ignore[assignment]
        except ImportError:
            raise UsageError("phase_callback needs Lightning: pip install 'lrrules[lightning]'") from None

    class LrrulesPhases(Callback):  # type: ignore[misc]
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            plan.apply_phase(epoch=trainer.current_epoch)

    return LrrulesPhases()
