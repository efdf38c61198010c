"""A latched emergency stop with an explicit, conditional reset.

Triggering always succeeds and latches; only :meth:`EStop.reset` releases it, and only when the caller reports no
reason against it (e.g. "joint states are stale"), so a reset can never drop the robot straight into an unsafe
state.
"""

from __future__ import annotations

from collections.abc import Sequence


class EStop:
    """Latched e-stop: :meth:`trigger` latches, :meth:`reset` releases when nothing blocks it."""

    def __init__(self) -> None:
        self.latched = False
        self.reason = ''
        self.triggers = 0
        self.resets = 0
        self.refused_resets = 0

    def trigger(self, reason: str) -> bool:
        """Latch the e-stop; return True if it was not latched before.

        Raises
        ------
        ValueError
            If ``reason`` is empty.
        """
        if not reason:
            raise ValueError('an e-stop needs a reason')
        self.triggers += 1
        if self.latched:
            return False
        self.latched, self.reason = True, reason
        return True

    def reset(self, blockers: Sequence[str] = ()) -> tuple[bool, str]:
        """Release the latch unless ``blockers`` (reasons it is unsafe now) is non-empty.

        Returns
        -------
        tuple[bool, str]
            (released, message). Resetting an e-stop that is not latched succeeds and says so.
        """
        if not self.latched:
            return True, 'e-stop was not latched'
        if blockers:
            self.refused_resets += 1
            return False, 'e-stop reset refused: ' + '; '.join(blockers)
        self.latched, previous, self.reason = False, self.reason, ''
        self.resets += 1
        return True, f'e-stop reset (was: {previous})'
