"""URDF limits through the simulation's URDF reader, in a chosen joint order."""

import numpy as np
import pytest

from hamwm_ros.safety.limits import JointLimits, LimitsError
from hamwm_ros.sim import parse_urdf_joints, robot_urdf_path


def test_limits_match_the_urdf_and_reorder_by_name():
    path = robot_urdf_path('cartpole')
    joints = parse_urdf_joints(path)
    limits = JointLimits.from_urdf(path, list(reversed(joints.names)))
    assert limits.names == tuple(reversed(joints.names))
    np.testing.assert_array_equal(limits.effort, joints.effort_limits[::-1])
    np.testing.assert_array_equal(limits.position, joints.position_limits[::-1])
    assert limits.reorder(joints.names).names == joints.names


def test_xml_text_is_accepted():
    text = robot_urdf_path('pendulum').read_text()
    limits = JointLimits.from_urdf(text)
    assert limits.names == ('hinge',) and limits.effort[0] == 5.0


@pytest.mark.parametrize(('source', 'names', 'reason'), [
    ('/no/such.urdf', None, 'cannot read'),
    ('<robot name="x"><link name="a"/></robot>', None, 'no movable joints'),
    ('<notarobot/>', None, 'expected <robot>'),
    (str(robot_urdf_path('pendulum')), ['hinge', 'elbow'], "['elbow']"),
])
def test_bad_urdf_or_joint_names_raise_with_a_reason(source, names, reason):
    with pytest.raises(LimitsError, match=reason.replace('[', r'\[').replace(']', r'\]')):
        JointLimits.from_urdf(source, names)


def test_inconsistent_limits_are_refused():
    with pytest.raises(LimitsError):
        JointLimits(('a',), [[1.0, 0.0]], [1.0], [1.0])
    with pytest.raises(LimitsError):
        JointLimits(('a', 'b'), [[0.0, 1.0]], [1.0], [1.0])
