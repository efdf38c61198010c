"""``hamwm bench mpc`` runs end to end at a tiny size, both implementations on the same model (no timing asserts)."""

import json
import math
from pathlib import Path

import pytest

from hamwm_ros.bench import mpc
from hamwm_ros.bench.mpc_loop import step_latencies

PENDULUM = Path(__file__).resolve().parent.parent / 'models' / 'pendulum'


def test_tiny_run_reports_both_implementations_on_the_same_model(tmp_path, capsys):
    out = tmp_path / 'mpc.json'
    code = mpc.main(['--test-model', '--samples', '16', '--horizon', '4', '--iterations', '3', '--warmup', '1',
                     '--threads', '1', '--loop-seconds', '0', '--json', str(out)])
    assert code == 0
    fig = json.loads(out.read_text())
    assert fig['rollout_max_abs_diff'] < 1e-4  # the ONNX export and the eager module predict the same futures
    assert fig['valid_fraction'] == 1.0
    assert fig['ours']['p50_ms'] > 0 and fig['eager_torch']['p50_ms'] > 0
    out = capsys.readouterr().out
    assert 'speed-up (p50)' in out
    # the 10 ms target is the cart-pole's at 1024 x 32: a tiny test model gets the figure, not a verdict
    assert fig['robot'] == 'test' and fig['p50_target_ms'] is None
    assert "the 10 ms target is the cartpole model's at 1024 x 32" in out and 'NOT met]; CPU' not in out


def test_p50_verdict_judges_only_the_target_case():
    fig = {'ours': {'p50_ms': 26.6}, 'p50_target_ms': None}
    assert 'met' not in mpc.p50_verdict(fig)
    assert mpc.p50_verdict({'ours': {'p50_ms': 4.7}, 'p50_target_ms': 10.0}) == 'target <= 10 ms: met'
    assert mpc.p50_verdict({'ours': {'p50_ms': 10.5}, 'p50_target_ms': 10.0}) == 'target <= 10 ms: NOT met'


def test_bad_arguments_refused(capsys):
    assert mpc.main(['--samples', '0']) == 2
    assert '--samples' in capsys.readouterr().out


def test_step_latency_is_the_first_opposing_command_before_the_next_step():
    steps = [(1.0, 0.3), (2.0, -0.3), (3.0, 0.3)]
    commands = [(0.9, -1.0), (1.01, 0.5), (1.02, -0.01), (1.05, -2.0), (1.5, -3.0),   # step 1: 50 ms
                (2.10, 1.0),                                                           # step 2: 100 ms
                (3.2, 1.0)]                                                            # step 3: never opposed
    assert step_latencies(steps, commands) == pytest.approx([0.05, 0.10])
    assert step_latencies(steps, []) == []


@pytest.mark.ros
@pytest.mark.skipif(not (PENDULUM / 'metadata.json').is_file(), reason='needs the shipped pendulum model')
def test_control_loop_part_runs_mpc_node_over_dds_and_reports_every_figure(tmp_path, capfd):
    # capfd, not capsys: rclpy's events executor enables faulthandler, which needs a real stderr file descriptor
    out = tmp_path / 'loop.json'
    assert mpc.main(['--loop-only', '--loop-seconds', '3', '--loop-model-dir', str(PENDULUM), '--json', str(out)]) == 0
    loop = json.loads(out.read_text())['loop']
    node, bare, pd = loop['mpc_node'], loop['bare_loop'], loop['reactive_pd_node']
    assert node['control_ticks'] > 200 and bare['control_ticks'] > 200   # 3 s at 500 Hz, slack for a loaded machine
    assert math.isfinite(node['period_error_p99_ms']) and math.isfinite(bare['period_error_p99_ms'])
    assert math.isfinite(node['state_to_command_ms_p50']) and node['state_to_command_ms_p50'] > 0
    assert pd['latency']['n'] >= 8 and node['latency']['n'] >= 1               # 12 steps of 0.25 s
    assert 0 < pd['latency']['p50_ms'] < 250 and 0 < node['latency']['p50_ms'] < 250   # steps are 250 ms apart
    text = capfd.readouterr().out
    assert 'bare Python loop' in text and 'reactive PD node' in text
