#!/usr/bin/env bash
# Creates .venv in the checkout with everything hamwm_ros needs, on a fresh Debian/Ubuntu machine with Python 3.10-3.12.
#  - With a sourced ROS 2 (ROS_DISTRO set) the venv sees the system's rclpy and no ROS wheel is installed over it.
#  - Without one, the ROS 2 Kilted Python wheels (requirements-ros.txt) give real rclpy over real DDS.
#  - torch is pinned to 2.13.0 and installed first, so nothing can pull a CUDA build by accident.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON=$candidate; break; fi
  done
fi
"$PYTHON" - <<'PY' || { echo "hamwm_ros needs Python 3.10-3.12 (found $($PYTHON --version))" >&2; exit 1; }
import sys
sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)
PY

# Offscreen MuJoCo rendering (MUJOCO_GL=egl) needs Mesa's EGL.
EGL_PACKAGES="libegl1 libegl-mesa0 libgl1-mesa-dri"
missing=""
for pkg in $EGL_PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing$missing (offscreen rendering)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "[setup] WARNING: camera rendering needs:$missing -- run: sudo apt-get install$missing" >&2
  fi
fi

venv_args=()
if [ -n "${ROS_DISTRO:-}" ]; then
  echo "[setup] ROS 2 $ROS_DISTRO is sourced: using its rclpy, installing no ROS wheels"
  venv_args+=(--system-site-packages)
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv "${venv_args[@]}" .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip setuptools wheel
"${PIP[@]}" install 'torch==2.13.0'
if [ -z "${ROS_DISTRO:-}" ]; then
  "${PIP[@]}" install -r requirements-ros.txt
fi
"${PIP[@]}" install -e '.[train,test]'
.venv/bin/python - <<'PY'
import torch, rclpy, pinocchio, mujoco, onnxruntime
assert torch.__version__.startswith('2.13.0'), torch.__version__
assert not torch.version.cuda, 'a CUDA torch build was installed'
print(f'[setup] ok: torch {torch.__version__}, pinocchio {pinocchio.__version__}, mujoco {mujoco.__version__}, '
      f'onnxruntime {onnxruntime.__version__} {onnxruntime.get_available_providers()}')
PY
