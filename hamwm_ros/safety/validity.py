"""The world-model validity input: the monitor's verdict decides whether plans made on the model may drive the robot.

``world_model_node`` publishes its model-validity monitor on ``/diagnostics`` with the levels of
diagnostic_msgs/DiagnosticStatus (OK 0, WARN 1, ERROR 2, STALE 3). :class:`ModelValidity` keeps the latest report
and answers, at any time, whether the model is to be distrusted:

* ERROR or STALE reported continuously for at least ``invalid_time`` seconds -> invalid (the reason carries the
  level and the monitor's message); an OK or WARN report ends it at once;
* once reports have been heard, none for ``report_timeout`` seconds -> invalid as STALE (a monitor that went
  silent cannot vouch for the model); before the first report nothing is known and the model is trusted (the
  monitor is optional).
"""

from __future__ import annotations

import math

OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = ('OK', 'WARN', 'ERROR', 'STALE')


class ModelValidity:
    """Latest world-model validity report and the rule above.

    Parameters
    ----------
    invalid_time
        Seconds an ERROR/STALE level must persist before the model is invalid (0: at once).
    report_timeout
        Seconds of silence, after a first report, that count as STALE (``inf``: never).

    Raises
    ------
    ValueError
        If ``invalid_time`` is negative or not finite, or ``report_timeout`` is not > 0.
    """

    def __init__(self, invalid_time: float = 0.5, report_timeout: float = math.inf) -> None:
        self.invalid_time = invalid_time
        self.report_timeout = report_timeout
        self.reset()

    @property
    def invalid_time(self) -> float:
        """Seconds a bad level must persist."""
        return self._invalid_time

    @invalid_time.setter
    def invalid_time(self, value: float) -> None:
        value = float(value)
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f'model_invalid_time must be finite and >= 0, got {value}')
        self._invalid_time = value

    @property
    def report_timeout(self) -> float:
        """Seconds of silence that count as STALE."""
        return self._report_timeout

    @report_timeout.setter
    def report_timeout(self, value: float) -> None:
        value = float(value)
        if math.isnan(value) or value <= 0.0:
            raise ValueError(f'model_validity_timeout must be > 0, got {value}')
        self._report_timeout = value

    def reset(self) -> None:
        """Forget every report (the model is trusted until the monitor says otherwise)."""
        self.level: int | None = None
        self.message = ''
        self.last_report: float | None = None
        self.bad_since: float | None = None
        self.reports = 0
        self.invalid_reports = 0

    def report(self, level: int, message: str, now: float) -> None:
        """One report: ``level`` 0..3 (unknown levels count as ERROR), at monotonic time ``now``."""
        level = int(level) if int(level) in (OK, WARN, ERROR, STALE) else ERROR
        self.reports += 1
        if level >= ERROR:
            self.invalid_reports += 1
            if self.bad_since is None or self.level is None or self.level < ERROR:
                self.bad_since = now
        else:
            self.bad_since = None
        self.level, self.message, self.last_report = level, str(message), now

    def problem(self, now: float) -> str | None:
        """Why the model must not drive the robot now, or None if it may."""
        if self.last_report is None:
            return None
        silent = now - self.last_report
        if silent > self._report_timeout:
            return f'world model validity STALE: no report from the monitor for {silent:.1f} s'
        if self.bad_since is not None and now - self.bad_since >= self._invalid_time:
            return f'world model validity {LEVEL_NAMES[self.level]}: {self.message or "(no message)"}'
        return None
