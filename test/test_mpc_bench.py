"""``hamwm bench mpc`` runs end to end at a tiny size, both implementations on the same model (no timing asserts)."""

import json

from hamwm_ros.bench import mpc


def test_tiny_run_reports_both_implementations_on_the_same_model(tmp_path, capsys):
    out = tmp_path / 'mpc.json'
    code = mpc.main(['--test-model', '--samples', '16', '--horizon', '4', '--iterations', '3', '--warmup', '1',
                     '--threads', '1', '--json', str(out)])
    assert code == 0
    fig = json.loads(out.read_text())
    assert fig['rollout_max_abs_diff'] < 1e-4  # the ONNX export and the eager module predict the same futures
    assert fig['valid_fraction'] == 1.0
    assert fig['ours']['p50_ms'] > 0 and fig['eager_torch']['p50_ms'] > 0
    assert 'speed-up (p50)' in capsys.readouterr().out


def test_bad_arguments_refused(capsys):
    assert mpc.main(['--samples', '0']) == 2
    assert '--samples' in capsys.readouterr().out
