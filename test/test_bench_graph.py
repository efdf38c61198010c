"""``hamwm bench graph``'s pure parts: overrides, one run's figures, joint speeds, mode and monitor shares, medians.

The graph itself (four node processes over DDS) is exercised by ``test_default_graph.py``; timing is the benchmark's
business, never asserted here.
"""

from __future__ import annotations

import numpy as np
import pytest

from hamwm_ros.bench.graph import (
    SETTLE_S,
    joint_speed_rms,
    medians,
    mode_shares,
    monitor_summary,
    parse_overrides,
    summarise_run,
)

DIAGNOSTICS = {'control_ticks': '2000', 'planned_ticks': '1500', 'fallback_ticks': '300', 'hold_ticks': '200',
               'plans': '240', 'planner_ms_p50': '48.5'}


def test_overrides_are_read_per_node_as_yaml_values():
    parsed = parse_overrides(['mpc_node.planner_rate:=25.0', 'sim_node.camera_lazy:=false',
                              'mpc_node.command_interface:=effort', 'mpc_node.fallback_kp:=[1.0, 2.0]'])
    assert parsed == {'mpc_node': {'planner_rate': 25.0, 'command_interface': 'effort', 'fallback_kp': [1.0, 2.0]},
                      'sim_node': {'camera_lazy': False}}
    assert parse_overrides([]) == {}
    with pytest.raises(ValueError, match='NODE.NAME:=VALUE'):
        parse_overrides(['planner_rate:=25.0'])
    with pytest.raises(ValueError, match='NODE.NAME:=VALUE'):
        parse_overrides(['mpc_node.planner_rate=25.0'])
    with pytest.raises(ValueError, match="'rviz' is not one of"):
        parse_overrides(['rviz.rate:=1.0'])


def test_a_run_is_summarised_from_the_diagnostics_and_the_pelvis_heights():
    cpu = {'sim_node': 0.35, 'balance_node': 0.4, 'world_model_node': 0.3, 'mpc_node': 0.7}
    run = summarise_run(DIAGNOSTICS, np.array([0.59, 0.585, 0.588]), cpu, 0.99)
    assert (run['planned'], run['fallback'], run['hold']) == pytest.approx((0.75, 0.15, 0.10))
    assert run['plan_ms_p50'] == 48.5 and run['plans'] == 240 and run['stood']
    assert run['cpu_total'] == pytest.approx(1.75)
    fell = summarise_run(DIAGNOSTICS, np.array([0.59, 0.3, 0.07]), cpu, 0.99)
    assert not fell['stood'] and fell['pelvis_min_m'] == pytest.approx(0.07)
    with pytest.raises(ValueError, match='no control ticks'):
        summarise_run({'control_ticks': '0'}, np.array([0.59]), cpu, None)
    with pytest.raises(ValueError, match='no /odom'):
        summarise_run(DIAGNOSTICS, np.array([]), cpu, None)


def test_medians_count_the_runs_that_stood():
    cpu = {'mpc_node': 0.5}
    runs = [summarise_run(DIAGNOSTICS, np.array([h]), cpu, 1.0) for h in (0.59, 0.07, 0.58)]
    summary = medians(runs)
    assert summary['stood'] == 2 and summary['runs'] == 3
    assert summary['pelvis_min_m'] == pytest.approx(0.58) and summary['planned'] == pytest.approx(0.75)


def test_joint_speed_counts_the_settled_rows_before_the_push_only():
    stamps = np.arange(0.0, 6.0, 0.5) + 100.0           # simulated seconds, first row at 100 s
    velocities = np.zeros((stamps.size, 3))
    velocities[stamps < 100.0 + SETTLE_S] = 50.0          # settling: ignored
    velocities[(stamps >= 100.0 + SETTLE_S) & (stamps < 104.0)] = [[0.3, -0.4, 0.0]]
    velocities[stamps >= 104.0] = 9.0                     # after the push: ignored
    expected = np.sqrt((0.3 ** 2 + 0.4 ** 2) / 3)
    assert joint_speed_rms(stamps, velocities, until=104.0) == pytest.approx(expected)
    assert joint_speed_rms(stamps, velocities, until=float('inf')) > 1.0      # no push: the whole settled run
    assert np.isnan(joint_speed_rms(stamps, velocities, until=100.0 + SETTLE_S))   # push before settling
    assert np.isnan(joint_speed_rms(np.array([]), np.zeros((0, 3)), until=1.0))


def test_the_joint_speed_reaches_the_run_figures_and_the_medians():
    cpu = {'mpc_node': 0.5}
    runs = [summarise_run(DIAGNOSTICS, np.array([0.59]), cpu, 1.0, speed) for speed in (0.5, 0.01, 0.02)]
    assert runs[0]['joint_speed_rms'] == 0.5
    assert medians(runs)['joint_speed_rms'] == pytest.approx(0.02)


def test_mode_shares_split_the_time_by_mode_text_with_numbers_merged():
    fallback = 'FALLBACK: PD hold of the nominal posture: '
    events = [(10.0, 'WAITING_FOR_STATE: no joint state yet'),
              (11.0, 'PLANNING: following the MPPI plan'),
              (15.0, fallback + 'planner late: plan is 231 ms old (max_plan_age 200 ms)'),
              (16.0, 'PLANNING: following the MPPI plan'),
              (18.0, fallback + 'planner late: plan is 245 ms old (max_plan_age 200 ms)'),
              (19.0, fallback + 'planner overran its period 10 times in a row')]
    shares = mode_shares(events, end=20.0)
    assert shares == pytest.approx({'PLANNING: following the MPPI plan': 0.6,
                                    fallback + 'planner late: plan is # ms old (max_plan_age # ms)': 0.2,
                                    'WAITING_FOR_STATE: no joint state yet': 0.1,
                                    fallback + 'planner overran its period # times in a row': 0.1})
    assert list(shares)[0].startswith('PLANNING')          # largest first
    assert sum(shares.values()) == pytest.approx(1.0)


def test_mode_shares_without_events_or_time_are_empty():
    assert mode_shares([], end=5.0) == {}
    assert mode_shares([(5.0, 'PLANNING: x')], end=5.0) == {}
    # events stamped at one instant (the latched mode and its successors before the run began): the last one holds
    assert mode_shares([(2.0, 'WAITING_FOR_STATE: a'), (2.0, 'PLANNING: b')], end=4.0) == {'PLANNING: b': 1.0,
                                                                                        'WAITING_FOR_STATE: a': 0.0}


def _report(level: str, ratio: str, balance: str, **checks: str) -> dict[str, str]:
    return {'level': level, 'prediction_error': '0.1', 'prediction_vs_hold_still': ratio, 'balance_error': balance,
            **{f'check_{name}': value for name, value in checks.items()}}


def test_monitor_summary_shares_levels_and_checks_over_the_judged_reports():
    reports = [{'level': 'OK', 'model_dir': 'models/humanoid'},       # before the first prediction: left out
               _report('OK', 'nan', '0.1', prediction='OK', hold_still='OK', energy_balance='OK'),
               _report('WARN', '1.2', '0.3', prediction='OK', hold_still='WARN', energy_balance='OK'),
               _report('WARN', '0.9', '0.35', prediction='OK', hold_still='WARN', energy_balance='WARN'),
               _report('ERROR', '0.8', 'nan', prediction='ERROR', hold_still='OK', energy_balance='WARN')]
    summary = monitor_summary(reports)
    assert summary['reports'] == 4
    assert summary['levels'] == pytest.approx({'OK': 0.25, 'WARN': 0.5, 'ERROR': 0.25, 'STALE': 0.0})
    assert summary['not_ok'] == pytest.approx({'energy_balance': 0.5, 'hold_still': 0.5, 'prediction': 0.25})
    assert summary['hold_still_ratio'] == pytest.approx(0.9)       # median of 1.2, 0.9, 0.8 (NaN left out)
    assert summary['balance_error'] == pytest.approx(0.3)          # median of 0.1, 0.3, 0.35
    empty = monitor_summary([])
    assert empty['reports'] == 0 and np.isnan(empty['hold_still_ratio']) and empty['levels']['OK'] == 0.0


def test_the_monitor_summary_reaches_the_run_figures_and_the_medians():
    cpu = {'mpc_node': 0.5}
    summaries = [monitor_summary([_report(level, '0.5', '0.1')]) for level in ('OK', 'WARN', 'WARN')]
    runs = [summarise_run(DIAGNOSTICS, np.array([0.59]), cpu, 1.0, monitor=m) for m in summaries]
    assert runs[1]['monitor']['levels']['WARN'] == 1.0
    summary = medians(runs)
    assert (summary['monitor_ok'], summary['monitor_warn'], summary['monitor_error']) == (0.0, 1.0, 0.0)
    assert summarise_run(DIAGNOSTICS, np.array([0.59]), cpu, 1.0)['monitor']['reports'] == 0
