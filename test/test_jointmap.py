"""Tests for hamwm_ros.jointmap."""

import numpy as np
import pytest

from hamwm_ros.jointmap import JointMap, JointMapError


def test_reorders_by_name_and_ignores_extra_joints():
    jm = JointMap(['a', 'b', 'c'])
    out = jm.reorder(['c', 'extra', 'a', 'b'], [3.0, 99.0, 1.0, 2.0])
    np.testing.assert_array_equal(out, [1.0, 2.0, 3.0])


def test_missing_joint_is_named():
    jm = JointMap(['a', 'b', 'c'])
    with pytest.raises(JointMapError, match=r"missing joints: \['b'\]"):
        jm.reorder(['a', 'c'], [1.0, 3.0])


def test_length_mismatch_and_non_finite_rejected():
    jm = JointMap(['a', 'b'])
    with pytest.raises(JointMapError, match='velocity has 1 entries for 2'):
        jm.reorder(['a', 'b'], [1.0], field='velocity')
    with pytest.raises(JointMapError, match=r"not finite for joints \['b'\]"):
        jm.reorder(['a', 'b'], [1.0, np.nan])


def test_empty_field_allowed_when_asked():
    jm = JointMap(['a'])
    assert jm.reorder(['a'], [], allow_empty=True) is None
    with pytest.raises(JointMapError):
        jm.reorder(['a'], [])


def test_duplicate_names_rejected():
    with pytest.raises(JointMapError, match='repeat'):
        JointMap(['a', 'a'])
    with pytest.raises(JointMapError, match='appears twice'):
        JointMap(['a']).indices(['a', 'a'])


def test_index_cache_is_bounded():
    jm = JointMap(['a'])
    for i in range(200):
        jm.indices(['a', f'x{i}'])
    assert len(jm._cache) <= 65
