"""Reliability case 16 (short form): ``hamwm bench soak`` runs the closed loop and prints finite, parsable figures.

The real soak is 10 minutes (``hamwm bench soak``; its figures are in the README). Here it runs for 6 s: sim_node and
mpc_node as processes over real DDS on this test session's ROS domain, and the printed figures must parse, be
finite and consistent, and the run must pass (no node died, RSS growth within the bound).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest

from hamwm_ros.bench import BENCHMARKS
from hamwm_ros.bench.soak import summarise

pytestmark = pytest.mark.ros


def _figure(text: str, key: str) -> str:
    match = re.search(rf'^{key}: (.*)$', text, re.MULTILINE)
    assert match, f'{key} not printed:\n{text}'
    return match.group(1)


def test_summary_of_samples():
    samples = [(float(t), {'rss_kb': 1000.0 + 10 * t, 'threads': 5.0 + (t == 3), 'missed_deadlines': 2.0 * t,
                           'control_ticks': 98.0 * t, 'commands_published': 98.0 * t, 'period_error_p99_ms': 0.5 + t,
                           'control_elapsed_s': float(t), 'stale_to_hold_ms_max': 1.0, 'mode': 'PLANNING'})
               for t in range(1, 10)]
    figures = summarise(samples, ['PLANNING: a', 'SAFE_HOLD: b', 'PLANNING: c'], 20480.0)
    assert figures['rss_growth_kib'] == pytest.approx(60.0)      # windows of span/3: t in 1..3 against 7..9
    assert (figures['threads_min'], figures['threads_max']) == (5.0, 6.0)
    assert figures['missed_deadline_rate'] == pytest.approx(0.02)
    assert figures['period_error_p99_ms_max'] == pytest.approx(9.5)
    assert figures['mode_changes'] == 2 and figures['modes_entered'] == {'PLANNING': 2, 'SAFE_HOLD': 1}
    assert figures['commands_per_s'] == pytest.approx(98.0)
    assert figures['relay'] is False                              # no relay figures: none reported
    for t, sample in samples:
        sample.update({'relay_period_error_p99_ms': 0.05 * t, 'relay_commands_published': 97.0 * t,
                       'relay_bypassed': 1.0, 'relay_rss_kb': 500.0 + 2 * t})
    figures = summarise(samples, ['PLANNING: a'], 20480.0)
    assert figures['relay'] is True and figures['relay_commands_published'] == 97.0 * 9
    assert figures['relay_period_error_p99_ms_max'] == pytest.approx(0.45)
    assert figures['relay_rss_growth_kib'] == pytest.approx(12.0)


def test_short_soak_prints_finite_figures_and_passes():
    assert 'soak' in BENCHMARKS
    command = [sys.executable, '-m', 'hamwm_ros.cli', 'bench', 'soak', '--minutes', '0.1',
               '--domain-id', os.environ['ROS_DOMAIN_ID']]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    assert _figure(text, 'result') == 'PASS'
    samples, span = re.match(r'(\d+) diagnostics over ([\d.]+) s', _figure(text, 'samples')).groups()
    assert int(samples) >= 3 and 3.0 <= float(span) <= 7.0, text
    growth = float(_figure(text, 'rss_growth_kib').split()[0])
    assert math.isfinite(growth) and abs(growth) < 20 * 1024
    low, high = (int(x) for x in re.match(r'min (\d+) max (\d+)', _figure(text, 'threads')).groups())
    assert 1 <= low <= high
    rate = float(_figure(text, 'missed_deadline_rate').split()[0])
    assert 0.0 <= rate < 1.0
    p99 = float(_figure(text, 'period_error_p99_ms').split()[0])
    assert math.isfinite(p99) and p99 >= 0.0
    commands = int(_figure(text, 'commands_published').split()[0])
    assert commands > 100, text                    # ~6 s at 500 Hz, even with many missed periods
    relay = _figure(text, 'relay')                 # command_relay is on by default
    assert int(relay.split()[0]) > 100, text
    changes = int(_figure(text, 'mode_changes').split()[0])
    assert changes >= 0
    assert 'mpc_node 0, sim_node 0' in _figure(text, 'exit_codes'), text
