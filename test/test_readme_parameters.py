"""The README's parameter tables list every parameter of every node, and nothing else.

Each node's table (the first table under its ``### `<node>``` heading) is compared with that node's section of
``config/hamwm.yaml``, set or commented; ``test_default_graph.py`` checks over ROS that those sections are exactly
what the running nodes declare. Rows may name several parameters: ``a / b``, ``a, b`` and
``critics.tracking/energy.weight`` (one row for several critics' weights).
"""

from pathlib import Path
import re

from param_files import file_parameters
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / 'README.md'
NODES = ('sim_node', 'balance_node', 'world_model_node', 'mpc_node')
RCLPY_DECLARED = {'use_sim_time'}


def _expand(cell: str) -> set[str]:
    """Names in one table cell.

    ``a / b`` and ``a, b`` (later names inherit the first one's dotted prefix), and ``prefix.x/y/z.suffix``.
    """
    names: set[str] = set()
    parts = [p.strip().strip('`') for p in re.split(r'\s*/\s+|\s+/\s*|,\s*', cell) if p.strip()]
    prefix = parts[0].rsplit('.', 1)[0] + '.' if '.' in parts[0] else ''
    for i, part in enumerate(parts):
        if i and '.' not in part and prefix:
            part = prefix + part
        match = re.fullmatch(r'(.*\.)?([a-z_]+(?:/[a-z_]+)+)(\.[a-z_]+)?', part)
        if match:
            names |= {f'{match.group(1) or ""}{alt}{match.group(3) or ""}' for alt in match.group(2).split('/')}
        else:
            names.add(part)
    return names


def readme_parameters(node: str) -> set[str]:
    """Parameter names in the first table under the node's heading."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f'### `{node}`'))
    names: set[str] = set()
    in_table = False
    for line in lines[start + 1:]:
        if line.startswith('### ') or line.startswith('## '):
            break
        if line.startswith('| name |') or line.startswith('| parameter |'):
            in_table = True
            continue
        if in_table:
            if not line.startswith('|'):
                break
            cell = line.split('|')[1].strip()
            if set(cell) <= {'-', ' '}:
                continue
            names |= _expand(cell)
    return names


def test_expansion_of_combined_rows():
    assert _expand('camera_width / camera_height') == {'camera_width', 'camera_height'}
    assert _expand('sole_lengths, sole_widths') == {'sole_lengths', 'sole_widths'}
    assert _expand('swingup.position_weights / velocity_weights') == {'swingup.position_weights',
                                                                      'swingup.velocity_weights'}
    assert _expand('critics.tracking/energy.weight') == {'critics.tracking.weight', 'critics.energy.weight'}


@pytest.mark.parametrize('node', NODES)
def test_every_parameter_of_the_node_has_a_readme_row(node):
    in_readme = readme_parameters(node)
    in_file = file_parameters(ROOT / 'config' / 'hamwm.yaml')[node]
    assert in_readme, f'no parameter table under ### `{node}`'
    assert not in_file - in_readme, f'{node}: parameters without a README row: {sorted(in_file - in_readme)}'
    extra = in_readme - in_file - RCLPY_DECLARED
    assert not extra, f'{node}: README rows for parameters the node does not have: {sorted(extra)}'
