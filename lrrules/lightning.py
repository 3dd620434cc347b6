"""Lightning (not a dependency, imported only when called): the rule file's training phases as a callback."""

from __future__ import annotations

from typing import Any

from .errors import UsageError
from .plan import Plan


def phase_callback(plan: Plan) -> Any:
    """A Lightning ``Callback`` calling ``plan.apply_phase(epoch=trainer.current_epoch)`` as each
    training epoch starts (a phase depends on the epoch alone, so a resumed run is in the right one).

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

    class LrrulesPhases(Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            plan.apply_phase(epoch=trainer.current_epoch)

    return LrrulesPhases()
