"""The ``hamwm`` command-line tool.

Each verb lives in its own module and is imported only when called, so ``hamwm bench wholebody`` never imports
torch and ``hamwm train`` never imports rclpy. A verb whose module is not part of this build is not listed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every verb's ``--help`` format: each option's default appended to its help.

    Not where the default is unset (None, False, empty) or the help text already says what it does.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ''
        default = action.default
        if 'default' in text or default is None or default is False or default == () or default == [] \
                or default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


# verb -> (module, function, one-line help). Each function takes the remaining argv list and returns an exit code.
VERBS: dict[str, tuple[str, str, str]] = {
    'sim': ('hamwm_ros.sim.cli', 'main', 'run a simulated robot over ROS 2 and report what it published'),
    'demo': ('hamwm_ros.demo', 'main', 'the closed-loop demo on the shipped models (the README main command)'),
    'train': ('hamwm_ros.worldmodel.train', 'main', 'train a Hamiltonian world model (sim, ROS 2 bags, npz)'),
    'eval': ('hamwm_ros.worldmodel.evaluate', 'main', 'evaluate models and baselines; HNN paper reproduction'),
    'export': ('hamwm_ros.worldmodel.export', 'main', 'export a trained model to ONNX with metadata'),
    'models': ('hamwm_ros.worldmodel.shipped', 'main', 'regenerate the shipped models in models/ from fixed seeds'),
    'bringup': ('hamwm_ros.bringup', 'main', 'start the node graph from config/hamwm.yaml without ros2 launch'),
    'bench': ('hamwm_ros.bench', 'main', 'benchmarks: sim, wholebody, predictor, mpc (ratios against baselines)'),
    'doctor': ('hamwm_ros.doctor', 'main', 'check this machine: DDS, MuJoCo rendering, Pinocchio, models, providers'),
}


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def usage() -> str:
    """The help text listing the verbs this build provides."""
    lines = ['usage: hamwm <verb> [options]', '', 'verbs:']
    for verb, (module, _, text) in VERBS.items():
        if _available(module):
            lines.append(f'  {verb:<9} {text}')
    lines.append('')
    lines.append("run 'hamwm <verb> --help' for a verb's options")
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``hamwm <verb> ...`` to the verb's module."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ('-h', '--help', 'help'):
        print(usage())
        return 0
    verb, rest = args[0], args[1:]
    if verb not in VERBS or not _available(VERBS[verb][0]):
        print(f"hamwm: unknown verb '{verb}'\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, function_name, _ = VERBS[verb]
    function = getattr(importlib.import_module(module_name), function_name)
    try:
        return int(function(rest) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
