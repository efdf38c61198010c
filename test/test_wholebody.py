"""Whole-body balance library: loading, joint mapping, and physics cross-checks in Pinocchio's own style.

Each quantity is checked against a second, independent route: RNEA against M a + nle, the ZMP from the centroidal
momentum rate against the ZMP from the inverse-dynamics base wrench and against finite differences of the momentum,
static ZMP against the CoM ground projection, stance-foot kinematics against the sole's own velocity/acceleration.
"""

from __future__ import annotations

import math

from biped_fixture import FOOT, biped_urdf
import numpy as np
import pinocchio as pin
import pytest

from hamwm_ros.jointmap import JointMapError
from hamwm_ros.wholebody.estimator import BalanceEstimator, BaseMeasurement, LowPassDerivative
from hamwm_ros.wholebody.geometry import convex_hull, signed_distance
from hamwm_ros.wholebody.model import WholeBodyError, WholeBodyModel

SOLES = ('l_sole', 'r_sole')


@pytest.fixture(scope='module')
def wb() -> WholeBodyModel:
    return WholeBodyModel(biped_urdf(), sole_frames=SOLES)


def random_state(wb: WholeBodyModel, rng: np.random.Generator, scale: float = 1.0):
    q = wb.configuration(rng.uniform(-0.6, 0.6, wb.n_joints), rng.normal(size=3) * 0.2 + [0, 0, 0.8],
                         rng.normal(size=4) * 0.1 + [0, 0, 0, 1])
    return q, rng.normal(size=wb.model.nv) * scale, rng.normal(size=wb.model.nv) * scale


# ------------------------------------------------------------------------------------------------ loading
def test_loads_path_and_xml_string_alike(tmp_path, wb):
    path = tmp_path / 'biped.urdf'
    path.write_text(biped_urdf())
    from_file = WholeBodyModel(path, sole_frames=SOLES)
    assert from_file.joint_names == wb.joint_names
    assert from_file.mass == pytest.approx(wb.mass)
    assert wb.model.nq == 7 + wb.n_joints + 1  # the continuous head joint stores cos/sin
    assert wb.feet[0].length == pytest.approx(FOOT[0]) and wb.feet[0].width == pytest.approx(FOOT[1])


def test_fixed_base_has_no_root_joint():
    fixed = WholeBodyModel(biped_urdf(), floating_base=False, sole_frames=SOLES)
    assert fixed.model.nv == fixed.n_joints
    assert not fixed.floating_base


@pytest.mark.parametrize(('kwargs', 'message'), [
    ({'sole_frames': ('l_sole', 'nope')}, "sole frame 'nope' is not in the model"),
    ({'sole_frames': SOLES, 'sole_sizes': [(0.2, 0.1), (0.2, 0.0)]}, "sole size of 'r_sole' must be positive"),
    ({'sole_frames': SOLES, 'sole_sizes': [(0.2, 0.1)]}, '1 sole sizes given for 2 sole frames'),
    ({'sole_frames': ('pelvis',)}, "no sole size given for 'pelvis'"),
    ({'contact_height': 0.0}, 'contact_height must be positive'),
])
def test_bad_configuration_is_refused_with_a_reason(kwargs, message):
    with pytest.raises(WholeBodyError, match=message):
        WholeBodyModel(biped_urdf(), **kwargs)


def test_bad_urdf_is_refused_with_a_reason(tmp_path):
    with pytest.raises(WholeBodyError, match='URDF file not found'):
        WholeBodyModel(tmp_path / 'missing.urdf')
    with pytest.raises(WholeBodyError, match='cannot parse URDF'):
        WholeBodyModel('<robot name="x"><link name="a"></robot>')


def test_joint_state_names_map_by_name(wb):
    jm = wb.joint_map()
    rng = np.random.default_rng(3)
    order = rng.permutation(wb.n_joints)
    names = [wb.joint_names[i] for i in order] + ['gripper']
    values = np.arange(wb.n_joints, dtype=float)[order].tolist() + [99.0]
    np.testing.assert_array_equal(jm.reorder(names, values), np.arange(wb.n_joints))
    with pytest.raises(JointMapError, match='torso_yaw'):
        jm.reorder([n for n in names if n != 'torso_yaw'], values[:-2] + [1.0])


def test_continuous_joint_angle_round_trips(wb):
    qj = np.zeros(wb.n_joints)
    head = wb.joint_names.index('head_yaw')
    qj[head] = 2.0
    q = wb.configuration(qj)
    assert pin.isNormalized(wb.model, q)
    assert wb.joint_positions(q)[head] == pytest.approx(2.0)


# ------------------------------------------------------------------------------------------------ physics
def test_rnea_equals_mass_matrix_times_a_plus_nle(wb):
    rng = np.random.default_rng(0)
    model, data = wb.model, wb.model.createData()
    for _ in range(10):
        q, v, a = random_state(wb, rng)
        tau = pin.rnea(model, data, q, v, a)
        mass = pin.crba(model, data, q)
        mass = np.triu(mass) + np.triu(mass, 1).T
        nle = pin.nonLinearEffects(model, data, q, v)
        np.testing.assert_allclose(tau, mass @ a + nle, atol=1e-9)


def test_zmp_from_momentum_rate_equals_zmp_from_rnea_base_wrench(wb):
    rng = np.random.default_rng(1)
    for _ in range(20):
        q, v, a = random_state(wb, rng, scale=0.5)
        state = wb.evaluate(q, v, a)
        np.testing.assert_allclose(state.zmp, wb.zmp_from_rnea(q, v, a), atol=1e-9)


def test_momentum_rate_matches_finite_differences_of_momentum(wb):
    """dh_G/dt from the algorithm against (h_G(t + e) - h_G(t - e)) / 2e along the motion."""
    rng = np.random.default_rng(2)
    model, data = wb.model, wb.model.createData()
    eps = 1e-6
    for _ in range(5):
        q, v, a = random_state(wb, rng)
        state = wb.evaluate(q, v, a)

        def momentum(t: float, q=q, v=v, a=a) -> np.ndarray:
            qt = pin.integrate(model, q, v * t + 0.5 * a * t * t)
            return pin.computeCentroidalMomentum(model, data, qt, v + a * t).vector.copy()

        np.testing.assert_allclose(state.momentum, momentum(0.0), atol=1e-10)
        np.testing.assert_allclose(state.momentum_rate, (momentum(eps) - momentum(-eps)) / (2 * eps), atol=1e-5)
        pin.centerOfMass(model, data, q, v)
        np.testing.assert_allclose(state.com_velocity, data.vcom[0], atol=1e-12)


def test_static_zmp_and_capture_point_equal_com_ground_projection(wb):
    rng = np.random.default_rng(4)
    zero = np.zeros(wb.model.nv)
    for _ in range(20):
        q, _, _ = random_state(wb, rng)
        state = wb.evaluate(q, zero, zero)
        com = pin.centerOfMass(wb.model, wb.model.createData(), q)
        np.testing.assert_allclose(state.zmp[:2], com[:2], atol=1e-12)
        np.testing.assert_allclose(state.capture_point[:2], com[:2], atol=1e-12)
        assert state.zmp[2] == wb.ground_height


def test_linear_inverted_pendulum_limit(wb):
    """A point-mass-like motion (pure base translation, no rotation) gives the LIPM ZMP c - z_c/g * c_dd."""
    q = wb.configuration(np.zeros(wb.n_joints), [0.0, 0.0, 0.8])
    v = np.zeros(wb.model.nv)
    a = np.zeros(wb.model.nv)
    a[:3] = [0.7, -0.4, 0.0]
    state = wb.evaluate(q, v, a)
    expected = state.com[:2] - state.com[2] / wb.gravity * a[:2]
    np.testing.assert_allclose(state.zmp[:2], expected, atol=1e-12)


def test_flight_gives_nan_zmp_and_minus_inf_margin(wb):
    q = wb.configuration(np.zeros(wb.n_joints), [0.0, 0.0, 0.8])
    v = np.zeros(wb.model.nv)
    a = np.zeros(wb.model.nv)
    a[2] = -wb.gravity  # free fall: no contact force
    state = wb.evaluate(q, v, a)
    assert np.all(np.isnan(state.zmp[:2]))
    assert state.margin == -math.inf


# ------------------------------------------------------------------------------------------------ support polygon
def test_convex_hull_and_signed_distance_against_brute_force():
    rng = np.random.default_rng(5)
    for _ in range(20):
        points = rng.normal(size=(rng.integers(3, 12), 2))
        hull = convex_hull(points)
        # every point on or inside every hull edge; hull vertices are input points
        edges = np.roll(hull, -1, axis=0) - hull
        rel = points[:, None, :] - hull[None]
        cross = edges[None, :, 0] * rel[..., 1] - edges[None, :, 1] * rel[..., 0]
        assert np.all(cross >= -1e-12)
        queries = rng.normal(size=(200, 2)) * 1.5
        sd = signed_distance(hull, queries)
        # brute-force boundary distance from a dense boundary sampling
        t = np.linspace(0, 1, 2001)[:, None]
        boundary = np.concatenate([hull[i] + t * edges[i] for i in range(len(hull))])
        brute = np.min(np.linalg.norm(queries[:, None] - boundary[None], axis=-1), axis=1)
        np.testing.assert_allclose(np.abs(sd), brute, atol=2e-3)
        inside = np.all(edges[None, :, 0] * (queries[:, None, 1] - hull[None, :, 1])
                        - edges[None, :, 1] * (queries[:, None, 0] - hull[None, :, 0]) > 0, axis=1)
        assert np.all((sd > 0) == inside)


def test_double_support_polygon_and_margin_sign(wb):
    est = BalanceEstimator(wb)
    state = est.update(0.0, np.zeros(wb.n_joints), np.zeros(wb.n_joints))
    assert state.contacts == (True, True)
    x, y = state.support_polygon[:, 0], state.support_polygon[:, 1]
    # both feet, 0.2 m apart, flat: the hull is a 0.22 x (0.2 + 0.11) rectangle
    assert x.max() - x.min() == pytest.approx(FOOT[0])
    assert y.max() - y.min() == pytest.approx(0.2 + FOOT[1])
    assert state.margin > 0
    assert state.margin == pytest.approx(min(x.max() - state.zmp[0], state.zmp[0] - x.min(),
                                             y.max() - state.zmp[1], state.zmp[1] - y.min()))


def test_lifted_foot_leaves_single_support(wb):
    est = BalanceEstimator(wb)
    qj = np.zeros(wb.n_joints)
    names = wb.joint_names
    qj[names.index('r_hip_pitch')], qj[names.index('r_knee')], qj[names.index('r_ankle_pitch')] = -0.4, 0.8, -0.4
    state = est.update(0.0, qj, np.zeros(wb.n_joints))
    assert state.base_source == 'stance:l_sole'
    assert state.contacts == (True, False)
    assert np.ptp(state.support_polygon[:, 1]) == pytest.approx(FOOT[1])
    # the CoM is between the feet, outside the left sole: a negative margin, equal to the distance to the sole edge
    assert state.margin < 0
    assert state.margin == pytest.approx(-(state.support_polygon[:, 1].min() - state.zmp[1]), abs=1e-9)


def _tipped_about_the_toes(wb: WholeBodyModel, angle: float) -> tuple[np.ndarray, float]:
    """The standing biped rotated forward by ``angle`` (rad) about its soles' toe line; returns q and that line's x."""
    est = BalanceEstimator(wb)
    est.update(0.0, np.zeros(wb.n_joints), np.zeros(wb.n_joints))
    q = est.last_q.copy()
    wb.tick(q, np.zeros(wb.model.nv), np.zeros(wb.model.nv))
    toe_x = max(s[9] for s in wb.soles) + FOOT[0] / 2
    pivot = np.array([toe_x, 0.0, wb.ground_height])
    turn = pin.utils.rpyToMatrix(0.0, angle, 0.0)      # +pitch about y lowers +x: the heels rise
    base = pin.XYZQUATToSE3(q[:7])
    q[:3] = pivot + turn @ (base.translation - pivot)
    q[3:7] = pin.SE3ToXYZQUAT(pin.SE3(turn @ base.rotation, q[:3]))[3:]
    return q, toe_x


def test_soles_rolled_onto_their_toes_leave_the_toe_edges_as_support(wb):
    q, toe_x = _tipped_about_the_toes(wb, 0.15)          # heels 3.3 cm up, sole centres 1.65 cm up
    zero = np.zeros(wb.model.nv)
    com, zx, zy, margin = wb.tick(q, zero, zero)
    assert wb.contacts == (True, True)
    assert all(s[11] > wb.contact_height for s in wb.soles)   # by the sole centres, neither would be in contact
    polygon = wb.edges.polygon
    assert np.allclose(polygon[:, 0], toe_x, atol=1e-9)     # the toe edges only: a segment across both feet
    assert np.ptp(polygon[:, 1]) == pytest.approx(0.2 + FOOT[1])
    # static: the ZMP is the CoM's ground projection, behind the toe line; the margin is minus that distance
    assert (zx, zy) == pytest.approx((com[0], com[1]), abs=1e-9)
    assert margin == pytest.approx(-(toe_x - zx), abs=1e-9)
    assert margin == pytest.approx(float(signed_distance(polygon, np.array([zx, zy]))), abs=1e-12)


def test_a_slightly_tilted_sole_still_supports_with_its_whole_rectangle(wb):
    q, _ = _tipped_about_the_toes(wb, 0.02)              # heels 4.4 mm up: within contact_height
    zero = np.zeros(wb.model.nv)
    wb.tick(q, zero, zero)
    assert wb.contacts == (True, True)
    # the whole rectangles (foreshortened by the tilt; a polygon cached from the flat pose is within tolerance)
    assert np.ptp(wb.edges.polygon[:, 0]) == pytest.approx(FOOT[0] * math.cos(0.02), abs=wb.polygon_tolerance)
    assert np.ptp(wb.edges.polygon[:, 1]) == pytest.approx(0.2 + FOOT[1])


# ------------------------------------------------------------------------------------------------ base estimation
def test_stance_kinematics_keeps_the_stance_sole_flat_and_still(wb):
    rng = np.random.default_rng(6)
    est = BalanceEstimator(wb)
    data = wb.model.createData()
    for k in range(5):
        qj = rng.uniform(-0.3, 0.3, wb.n_joints)
        est.update(0.01 * k, qj, rng.normal(size=wb.n_joints), rng.normal(size=wb.n_joints))
        q, v, a = est.last_q, est.last_v, est.last_a
        fid = wb.feet[est.stance].frame_id
        pin.forwardKinematics(wb.model, data, q, v, a)
        sole = pin.updateFramePlacement(wb.model, data, fid)
        assert sole.translation[2] == pytest.approx(wb.ground_height, abs=1e-12)
        np.testing.assert_allclose(sole.rotation[:, 2], [0, 0, 1], atol=1e-12)
        np.testing.assert_allclose(pin.getFrameVelocity(wb.model, data, fid, pin.LOCAL).vector, 0, atol=1e-10)
        np.testing.assert_allclose(pin.getFrameClassicalAcceleration(wb.model, data, fid, pin.LOCAL).vector, 0,
                                   atol=1e-9)


def test_imu_odometry_measurement_reproduces_the_exact_state(wb):
    """IMU + odometry readings synthesised from a known state give back that state and its ZMP.

    The base source says which estimate is in use.
    """
    rng = np.random.default_rng(7)
    model, data = wb.model, wb.model.createData()
    q, v, a = random_state(wb, rng, scale=0.5)
    pin.forwardKinematics(model, data, q, v, a)
    base = data.oMi[1]
    omega = v[3:6]
    classical = pin.getClassicalAcceleration(model, data, 1, pin.LOCAL).linear  # base origin, base axes
    proper = classical - base.rotation.T @ model.gravity.linear
    measurement = BaseMeasurement(position=base.translation.copy(),
                                  orientation_xyzw=pin.Quaternion(base.rotation).coeffs().copy(),
                                  linear_velocity=base.rotation @ v[:3], angular_velocity=omega,
                                  linear_acceleration=proper, angular_acceleration=a[3:6])
    est = BalanceEstimator(wb)
    state = est.update(0.0, wb.joint_positions(q), v[6:], a[6:], base=measurement)
    assert state.base_source == 'imu_odometry'
    np.testing.assert_allclose(est.last_q, q, atol=1e-12)
    np.testing.assert_allclose(est.last_v, v, atol=1e-12)
    np.testing.assert_allclose(est.last_a, a, atol=1e-10)
    np.testing.assert_allclose(state.zmp, wb.evaluate(q, v, a).zmp, atol=1e-10)


def test_estimator_rejects_bad_input_and_keeps_its_state(wb):
    est = BalanceEstimator(wb)
    zeros = np.zeros(wb.n_joints)
    est.update(1.0, zeros, zeros)
    bad = zeros.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match='finite'):
        est.update(2.0, bad, zeros)
    with pytest.raises(ValueError, match='stamp did not increase'):
        est.update(1.0, zeros, zeros)
    with pytest.raises(ValueError, match='positions must be'):
        est.update(3.0, zeros[:-1], zeros)
    assert est.update(4.0, zeros, zeros).margin > 0


def test_finite_difference_accelerations_are_exact_on_linear_velocity_ramps():
    d = LowPassDerivative(0.0)
    slope = np.array([1.0, -2.0, 0.5])
    out = [d.update(t, slope * t) for t in np.arange(0.0, 0.1, 0.01)]
    np.testing.assert_allclose(out[-1], slope)
    filtered = LowPassDerivative(0.02)
    values = [filtered.update(t, slope * t) for t in np.arange(0.0, 1.0, 0.001)]
    np.testing.assert_allclose(values[-1], slope, rtol=1e-6)  # the filter converges to the true derivative
    assert np.all(np.abs(values[5]) < np.abs(slope))            # and lags it at first
    with pytest.raises(ValueError):
        filtered.update(0.5, slope)
    with pytest.raises(ValueError):
        LowPassDerivative(-1.0)


def test_imu_without_odometry_reproduces_a_stance_state(wb):
    """IMU readings of a state whose stance sole is still give back that state (position and velocity from the sole).

    The state comes from stance-foot kinematics (sole flat and still); an IMU reports its orientation, gyro, proper
    acceleration and (here) angular acceleration; the IMU-only estimate must coincide with it.
    """
    rng = np.random.default_rng(8)
    stance_est = BalanceEstimator(wb)
    qj, vj, aj = rng.uniform(-0.2, 0.2, wb.n_joints), rng.normal(size=wb.n_joints), rng.normal(size=wb.n_joints)
    truth = stance_est.update(0.0, qj, vj, aj)
    q, v, a = stance_est.last_q, stance_est.last_v, stance_est.last_a
    model, data = wb.model, wb.model.createData()
    pin.forwardKinematics(model, data, q, v, a)
    rotation = data.oMi[1].rotation
    proper = pin.getClassicalAcceleration(model, data, 1, pin.LOCAL).linear - rotation.T @ model.gravity.linear
    imu = BaseMeasurement(None, q[3:7].copy(), None, v[3:6].copy(), proper, a[3:6].copy())
    est = BalanceEstimator(wb)
    est.reset(anchor=stance_est.anchor, stance=stance_est.stance)
    state = est.update(0.0, qj, vj, aj, base=imu)
    assert state.base_source == f'imu+stance:{wb.feet[stance_est.stance].frame}'
    np.testing.assert_allclose(est.last_q, q, atol=1e-12)
    np.testing.assert_allclose(est.last_v, v, atol=1e-10)
    np.testing.assert_allclose(est.last_a, a, atol=1e-9)
    np.testing.assert_allclose(state.zmp, truth.zmp, atol=1e-9)


def test_known_external_wrench_is_removed_from_the_zmp(wb):
    """A static robot partly held up at a point p by a known force F.

    The ground carries the rest, with its CoP at the lever balance (m g c - F p) / (m g - F).
    """
    q = wb.configuration(np.zeros(wb.n_joints), [0.0, 0.0, 0.8])
    zero = np.zeros(wb.model.nv)
    com = pin.centerOfMass(wb.model, wb.model.createData(), q)
    weight = wb.mass * wb.gravity
    point = np.array([0.3, -0.1, 1.0])
    force = np.array([0.0, 0.0, 0.3 * weight])
    external = np.concatenate([force, np.cross(point, force)])
    state = wb.evaluate(q, zero, zero, external=external)
    expected = (weight * com[:2] - force[2] * point[:2]) / (weight - force[2])
    np.testing.assert_allclose(state.zmp[:2], expected, atol=1e-12)
    # the whole weight carried by the known force: no ground reaction, no ZMP
    lifted = np.concatenate([[0.0, 0.0, weight], np.cross(com, [0.0, 0.0, weight])])
    assert np.all(np.isnan(wb.evaluate(q, zero, zero, external=lifted).zmp[:2]))


# ------------------------------------------------------------------------------------------------ per-tick path
def test_tick_reads_live_views_and_matches_the_copying_path(wb):
    """The tick reads Pinocchio's results through arrays made once; they must stay views of ``data``.

    A second model reads copies made after every call (the fallback for a Pinocchio whose accessors copy): both give
    the same numbers, sole placements and contact flags on random states.
    """
    assert wb._views is not None, 'this Pinocchio returns copies: the tick runs its slower fallback'
    slow = WholeBodyModel(biped_urdf(), sole_frames=SOLES)
    slow._use_views(False)
    rng = np.random.default_rng(11)
    seen = set()
    for _ in range(20):
        q, v, a = random_state(wb, rng)
        q[2] = rng.uniform(0.55, 0.75)  # some states with a sole in contact, some without
        fast_out, slow_out = wb.tick(q, v, a), slow.tick(q, v, a)
        np.testing.assert_array_equal(np.hstack(fast_out), np.hstack(slow_out))
        assert wb.soles == slow.soles and wb.contacts == slow.contacts
        seen.add(wb.contacts)
        placements = wb.sole_placements()
        for h, placement in zip(wb.soles, placements):
            np.testing.assert_array_equal(h, np.concatenate([placement.rotation.ravel(order='F'),
                                                             placement.translation]))
    assert len(seen) >= 3  # double, single and no support all occurred


def test_cached_support_polygon_is_reused_only_within_tolerance():
    wb = WholeBodyModel(biped_urdf(), sole_frames=SOLES, polygon_tolerance=1e-3)
    est = BalanceEstimator(wb)
    est.update(0.0, np.zeros(wb.n_joints), np.zeros(wb.n_joints))
    q, v, a = est.last_q.copy(), est.last_v, est.last_a
    wb.tick(q, v, a)
    first = wb.edges
    # the whole robot moved by less than the tolerance: the same polygon object, off by at most the tolerance
    q[0] += 0.5e-3
    _, zx, zy, margin = wb.tick(q, v, a)
    assert wb.edges is first
    fresh = wb.support_polygon(wb.contacts)
    assert abs(margin - fresh.distance(zx, zy)) <= 1e-3
    # beyond the tolerance: recomputed, and the margin is exact again
    q[0] += 2e-3
    _, zx, zy, margin = wb.tick(q, v, a)
    assert wb.edges is not first
    assert margin == pytest.approx(signed_distance(wb.support_polygon(wb.contacts).polygon, np.array([zx, zy])),
                                   abs=1e-12)
    # a changed contact set is never served from the cache
    second = wb.edges
    wb.tick(q, v, a, contacts=(True, False))
    assert wb.edges is not second and np.ptp(wb.edges.polygon[:, 1]) == pytest.approx(FOOT[1])
    # tolerance 0 recomputes on any motion
    exact = WholeBodyModel(biped_urdf(), sole_frames=SOLES, polygon_tolerance=0.0)
    exact.tick(q, v, a)
    kept = exact.edges
    q[1] += 1e-9
    exact.tick(q, v, a)
    assert exact.edges is not kept


def test_tick_margin_agrees_with_signed_distance_inside_and_outside(wb):
    """The tick's inlined inside-distance and EdgeTable's outside path against the vectorised signed distance."""
    est = BalanceEstimator(wb)
    est.update(0.0, np.zeros(wb.n_joints), np.zeros(wb.n_joints))
    q, v, _ = est.last_q, est.last_v, est.last_a
    rng = np.random.default_rng(12)
    signs = set()
    for _ in range(40):
        a = np.zeros(wb.model.nv)
        a[:2] = rng.normal(size=2) * 3.0  # base acceleration moves the ZMP in and out of the polygon
        _, zx, zy, margin = wb.tick(q, v, a)
        expected = signed_distance(wb.edges.polygon, np.array([zx, zy]))
        assert margin == pytest.approx(float(expected), abs=1e-12)
        signs.add(margin > 0)
    assert signs == {True, False}


# ------------------------------------------------------------------------------------------------ joint efforts
def test_joint_efforts_give_the_base_acceleration_of_rocking_feet(wb):
    """Stance kinematics plus joint torques recover a base acceleration the flat-foot constraint cannot see.

    The state: stance-kinematics pose and velocity, but the base (and so the soles) accelerating: feet rocking on a
    compliant contact. Contact wrenches that balance the base rows, and the joint torques of that motion, come from
    RNEA; the estimator, given those torques, must find the base acceleration, and its ZMP must equal the centre of
    pressure of the contact wrenches (a second route).
    """
    rng = np.random.default_rng(13)
    names = wb.joint_names
    qj = np.zeros(wb.n_joints)
    for side in 'lr':  # a symmetric crouch: both soles flat on the ground
        qj[[names.index(f'{side}_hip_pitch'), names.index(f'{side}_knee'), names.index(f'{side}_ankle_pitch')]] = (
            -0.2, 0.4, -0.2)
    qj[[names.index('torso_yaw'), names.index('arm_pitch')]] = rng.uniform(-0.5, 0.5, 2)
    vj, aj = rng.normal(size=wb.n_joints) * 0.3, rng.normal(size=wb.n_joints)
    flat = BalanceEstimator(wb)
    state_flat = flat.update(0.0, qj, vj, aj)
    assert state_flat.contacts == (True, True)
    q, v = flat.last_q, flat.last_v
    a = flat.last_a.copy()
    a[:6] += rng.normal(size=6) * [0.2, 0.2, 0.1, 0.5, 0.5, 0.2]  # the rocking flat-foot kinematics misses
    push = np.concatenate([[20.0, -10.0, 0.0], np.cross(q[:3], [20.0, -10.0, 0.0])])  # on the root link
    tau = pin.rnea(wb.model, wb.data, q, v, a)
    push_base = pin.XYZQUATToSE3(q[:7]).actInv(pin.Force(push)).vector
    jacobians = [pin.computeFrameJacobian(wb.model, wb.data, q, foot.frame_id, pin.LOCAL) for foot in wb.feet]
    stacked = np.vstack(jacobians)
    wrenches = np.linalg.lstsq(stacked[:, :6].T, tau[:6] - push_base, rcond=None)[0]
    residual = tau - stacked.T @ wrenches
    residual[:6] -= push_base
    np.testing.assert_allclose(residual[:6], 0.0, atol=1e-9)
    efforts = residual[6:] + wb.model.damping[6:] * vj

    est = BalanceEstimator(wb)
    state = est.update(0.0, qj, vj, aj, external=push, joint_efforts=efforts)
    assert state.base_source == 'stance+effort:l_sole'
    np.testing.assert_allclose(est.last_q, q, atol=1e-12)
    np.testing.assert_allclose(est.last_a[:6], a[:6], atol=1e-8)
    # the centre of pressure of the contact wrenches (world, on the ground plane)
    total = pin.Force.Zero()
    for foot, wrench in zip(wb.feet, wrenches.reshape(-1, 6)):
        total += pin.updateFramePlacement(wb.model, wb.data, foot.frame_id).act(pin.Force(wrench))
    f, n = total.linear, total.angular
    cop = np.array([-n[1] / f[2], n[0] / f[2]])  # ground plane z = 0
    np.testing.assert_allclose(state.zmp[:2], cop, atol=1e-9)
    assert np.linalg.norm(state_flat.zmp[:2] - cop) > 5e-3  # flat-foot kinematics alone is off by far more
    with pytest.raises(ValueError, match='joint efforts'):
        est.update(0.01, qj, vj, aj, joint_efforts=efforts[:-1])
