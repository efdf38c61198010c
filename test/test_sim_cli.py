"""Process helpers of ``hamwm_ros.sim.cli``: stopping node processes as Ctrl-C would, and diagnosing a stuck one."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from hamwm_ros.sim.cli import interrupt_process

STUCK = textwrap.dedent('''
    import signal, sys, time
    from hamwm_ros.nodes import dump_stacks_on_sigusr1

    def stuck_in_shutdown():
        while True:
            time.sleep(0.05)

    dump_stacks_on_sigusr1()
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # a shutdown that never ends
    print('ready', flush=True)
    stuck_in_shutdown()
''')


def _start(source: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, '-c', source], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == 'ready'
    return process


def test_a_process_that_ignores_sigint_prints_its_stacks_then_is_killed():
    process = _start(STUCK)
    code = interrupt_process(process, timeout=0.5)
    assert code == -9
    stderr = process.stderr.read()
    assert 'stuck_in_shutdown' in stderr, stderr      # where it was stuck, from the SIGUSR1 dump


def test_a_process_that_exits_on_sigint_reports_its_own_code():
    # the default SIGINT handler first: a shell's background job (CI, `make test &`) passes SIGINT down ignored
    process = _start('import signal, sys, time\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n'
                     'try:\n    print("ready", flush=True)\n    time.sleep(30)\nexcept KeyboardInterrupt:\n'
                     '    sys.exit(3)\n')
    assert interrupt_process(process, timeout=10.0) == 3
    assert interrupt_process(process) == 3       # already finished: just its code
