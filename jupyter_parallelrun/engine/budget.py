"""How a step run stops before its input is done: the error budget, and the two outcomes.

The scheduler checks the :class:`Budget` as mini-batches commit and raises
:class:`StepFailed` (budget exceeded, no worker could start, output unwritable) or
:class:`StepCanceled`; the runner turns them into the step's final status.
"""

from __future__ import annotations

from dataclasses import dataclass


class StepFailed(Exception):
    """The step run cannot go on (error budget, no worker could start, output unwritable)."""


class StepCanceled(Exception):
    """``cancel()`` was asked for."""


@dataclass
class Budget:
    """The error budget of SPEC §3 (``-1`` or None: unlimited)."""

    error_threshold: int = -1
    allowed_failed_count: int | None = None
    allowed_failed_percent: float | None = None

    def exceeded(self, items_failed: int, mb_failed: int, mb_total: int | None) -> str | None:
        if self.error_threshold not in (None, -1) and items_failed > self.error_threshold:
            return (
                f"error_threshold={self.error_threshold} exceeded: "
                f"{items_failed} input items failed"
            )
        if self.allowed_failed_count not in (None, -1) and mb_failed > self.allowed_failed_count:
            return (
                f"allowed_failed_count={self.allowed_failed_count} exceeded: "
                f"{mb_failed} mini-batches failed"
            )
        if self.allowed_failed_percent is not None and mb_total:
            percent = 100.0 * mb_failed / mb_total
            if percent > self.allowed_failed_percent:
                return (
                    f"allowed_failed_percent={self.allowed_failed_percent} exceeded: "
                    f"{mb_failed} of {mb_total} mini-batches failed ({percent:.1f}%)"
                )
        return None
