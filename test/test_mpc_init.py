"""The planning library's import boundary: no rclpy, no torch (robots run it without either)."""

import subprocess
import sys


def test_library_imports_neither_rclpy_nor_torch():
    code = ('import sys, hamwm_ros.mpc, hamwm_ros.mpc.analytic; '
            'print(sorted(m for m in ("torch", "rclpy") if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == '[]'


def test_public_names_resolve():
    import hamwm_ros.mpc as mpc

    for name in mpc.__all__:
        assert getattr(mpc, name) is not None
