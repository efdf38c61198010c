"""Simulation behaviour on real MuJoCo physics: energy, standing, pushes, limits, bad input, tracking, rendering."""

import math

import mujoco
import numpy as np
import pytest

from hamwm_ros.sim import Simulation

G = 9.81


def _pendulum_energy(q: float, v: float) -> float:
    """Energy of pendulum.urdf computed from its URDF values: 1 kg at 1 m, 0.001 kg m^2 about the bob's centre."""
    inertia = 0.001 + 1.0 * 1.0**2
    return 0.5 * inertia * v**2 + 1.0 * G * 1.0 * (1.0 - math.cos(q))


def test_unforced_undamped_pendulum_conserves_energy_over_10_s():
    """RK4 at 1 ms: relative energy drift below 1e-9 over 10 s of a large (2.5 rad) swing (measured 6e-13)."""
    sim = Simulation('pendulum')
    sim.set_joint_state([2.5], [0.0])
    e0 = _pendulum_energy(2.5, 0.0)
    drift = 0.0
    lowest = 2.5
    for _ in range(100):
        sim.step(100)
        state = sim.joint_state()
        assert state.effort[0] == 0.0
        drift = max(drift, abs(_pendulum_energy(state.position[0], state.velocity[0]) - e0) / e0)
        lowest = min(lowest, abs(state.position[0]))
    assert sim.time == pytest.approx(10.0)
    assert lowest < 0.2  # it did swing through the bottom
    assert drift < 1e-9


def _foot_geoms(sim: Simulation) -> dict[str, int]:
    return {side: int(sim.model.body(f'{side}_foot').geomadr[0]) for side in ('left', 'right')}


def _feet_in_contact(sim: Simulation) -> set[str]:
    feet = _foot_geoms(sim)
    touching = set()
    for i in range(sim.data.ncon):
        pair = {sim.data.contact[i].geom1, sim.data.contact[i].geom2}
        for side, geom in feet.items():
            if geom in pair:
                touching.add(side)
    return touching


def _support_box(sim: Simulation) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned box around both soles (the support polygon while the feet stay parallel and flat)."""
    corners = []
    for side, geom in _foot_geoms(sim).items():
        half = sim.model.geom_size[geom][:2]
        centre = sim.data.body(f'{side}_sole').xpos[:2]
        corners += [centre - half, centre + half]
    corners = np.array(corners)
    return corners.min(axis=0), corners.max(axis=0)


def test_humanoid_stands_3_s_under_nominal_pd_hold():
    sim = Simulation('humanoid')
    z0 = sim.base_state().position[2]
    for _ in range(30):
        sim.step(100)
        base = sim.base_state()
        assert abs(base.position[2] - z0) < 0.01
        assert abs(base.position[0]) < 0.03 and abs(base.position[1]) < 0.03
        assert _feet_in_contact(sim) == {'left', 'right'}
        cop, normal = sim.center_of_pressure()
        low, high = _support_box(sim)
        assert np.all(cop[:2] > low + 0.01) and np.all(cop[:2] < high - 0.01)
        assert normal == pytest.approx(38.5 * G, rel=0.05)
    # at rest: the IMU reads gravity's reaction in the base frame, the CoP sits under the centre of mass
    base = sim.base_state()
    rotation = np.zeros(9)
    x, y, z, w = base.orientation_xyzw
    mujoco.mju_quat2Mat(rotation, np.array([w, x, y, z]))
    np.testing.assert_allclose(base.linear_acceleration, rotation.reshape(3, 3).T @ [0.0, 0.0, G], atol=0.02)
    assert np.linalg.norm(base.angular_velocity) < 0.01
    assert np.linalg.norm(base.linear_velocity) < 0.01
    com = sim.data.subtree_com[sim.model.body('pelvis').id]
    np.testing.assert_allclose(sim.center_of_pressure()[0][:2], com[:2], atol=0.003)
    np.testing.assert_allclose(base.orientation_xyzw[3], 1.0, atol=1e-3)


def test_push_moves_the_base_and_it_recovers_or_falls():
    outcomes = {}
    for force in (80.0, 600.0):
        sim = Simulation('humanoid')
        sim.step(500)
        start = sim.base_state().position.copy()
        sim.apply_push([force, 0.0, 0.0], 0.1)
        largest = 0.0
        for _ in range(25):
            sim.step(100)
            largest = max(largest, sim.base_state().position[0] - start[0])
        assert largest > 0.005  # the push had an effect, in its direction
        final = sim.base_state()
        outcomes[force] = 'stands' if final.position[2] > 0.5 and _feet_in_contact(sim) else 'fell'
        assert np.all(np.isfinite(final.position))
    assert outcomes == {80.0: 'stands', 600.0: 'fell'}


def test_push_lasts_its_duration_only():
    sim = Simulation('pendulum')
    sim.apply_push([3.0, 0.0, 0.0], 0.05)
    sim.step(50)
    v_after_push = sim.joint_state().velocity[0]
    # impulse 0.15 N s at 1 m on 1.001 kg m^2 from rest: ~0.15 rad/s (gravity is negligible over 50 ms); +x at the
    # bob below the hinge is a negative rotation about +y
    assert v_after_push == pytest.approx(-0.15 / 1.001, rel=0.02)
    assert np.all(sim.data.xfrc_applied == 0.0)
    with pytest.raises(ValueError):
        sim.apply_push([np.nan, 0.0, 0.0], 0.1)
    with pytest.raises(ValueError):
        sim.apply_push([1.0, 0.0, 0.0], 0.0)


def test_effort_is_clamped_to_urdf_limits():
    sim = Simulation('pendulum')
    sim.set_effort([100.0])
    assert sim.held_effort.tolist() == [5.0]
    assert sim.joint_state().effort.tolist() == [5.0]
    # at q = 0 gravity exerts no torque: the acceleration is that of the clamped 5 N m
    assert sim.joint_accelerations()[0] == pytest.approx(5.0 / 1.001, rel=1e-9)

    humanoid = Simulation('humanoid')  # PD hold active: the clamp applies to PD + feed-forward
    humanoid.set_effort(-10.0 * humanoid.effort_limits)
    humanoid.step(5)
    applied = humanoid.joint_state().effort
    assert np.all(np.abs(applied) <= humanoid.effort_limits + 1e-9)
    assert np.any(np.isclose(np.abs(applied), humanoid.effort_limits))


def test_passive_joint_gets_no_effort():
    sim = Simulation('cartpole')
    sim.set_effort([5.0, 5.0])
    assert sim.held_effort.tolist() == [5.0, 0.0]
    sim.step(10)
    assert sim.joint_state().effort[1] == 0.0


@pytest.mark.parametrize('bad', [[np.nan], [np.inf], [-np.inf], [1.0, 2.0], 'x', [[1.0]]])
def test_bad_effort_rejected_and_never_applied(bad):
    sim, twin = Simulation('pendulum'), Simulation('pendulum')
    for s in (sim, twin):
        s.set_joint_state([0.3])
        s.set_effort([1.0])
    with pytest.raises(ValueError):
        sim.set_effort(bad)
    assert sim.held_effort.tolist() == [1.0]
    sim.step(200)
    twin.step(200)
    assert np.all(np.isfinite(sim.joint_state().position))
    np.testing.assert_array_equal(sim.joint_state().position, twin.joint_state().position)


def test_bad_position_targets_rejected_and_previous_kept():
    sim = Simulation('pendulum')
    sim.set_position_targets([0.2])
    for kwargs in ({'q': [np.nan]}, {'q': [0.1], 'v': [np.inf]}, {'q': [0.1], 'kp': -1.0}, {'q': [0.1, 0.2]}):
        with pytest.raises(ValueError):
            sim.set_position_targets(**kwargs)
    sim.step(3000)
    q = sim.joint_state().position[0]
    # still tracking 0.2 with the default gains: kp (0.2 - q) = m g l sin(q)
    assert sim.default_kp[0] * (0.2 - q) == pytest.approx(G * math.sin(q), abs=1e-3)


def test_pendulum_pd_settles_at_the_static_equilibrium():
    sim = Simulation('pendulum')
    sim.set_position_targets([0.3], kp=200.0, kd=30.0)
    sim.step(4000)
    state = sim.joint_state()
    q = state.position[0]
    assert 200.0 * (0.3 - q) == pytest.approx(G * math.sin(q), abs=1e-4)  # PD torque balances gravity
    assert abs(q - 0.3) < 0.02
    assert abs(state.velocity[0]) < 1e-4
    assert state.effort[0] == pytest.approx(G * math.sin(q), abs=1e-3)
    sim.clear_position_targets()
    sim.step(300)
    assert sim.joint_state().position[0] < 0.2  # without the hold, it swings back down


def test_cartpole_cart_tracks_position_target():
    sim = Simulation('cartpole')
    sim.set_position_targets([0.5, 0.0])
    sim.step(5000)
    state = sim.joint_state()
    assert abs(state.position[0] - 0.5) < 0.03
    assert abs(state.velocity[0]) < 0.1
    sim.set_position_targets([5.0, 0.0])  # beyond the rail: clipped to the 2 m stop
    sim.step(4000)
    assert 1.8 < sim.joint_state().position[0] <= 2.01


def test_step_and_reset_validation_and_determinism():
    sim = Simulation('acrobot')
    with pytest.raises(ValueError):
        sim.step(-1)
    with pytest.raises(ValueError):
        sim.step(1.5)
    with pytest.raises(ValueError):
        sim.reset(seed=-3)
    sim.reset(seed=4)
    start = sim.joint_state().position
    assert not np.allclose(start, sim.nominal_posture)
    sim.set_effort([0.0, 2.0])
    sim.step(500)
    end = sim.joint_state().position
    sim.reset(seed=4)
    np.testing.assert_array_equal(sim.joint_state().position, start)
    assert sim.time == 0.0 and sim.held_effort.tolist() == [0.0, 0.0]
    sim.set_effort([0.0, 2.0])
    sim.step(500)
    np.testing.assert_array_equal(sim.joint_state().position, end)
    sim.reset()
    np.testing.assert_array_equal(sim.joint_state().position, sim.nominal_posture)


def test_queries_do_not_change_the_trajectory():
    quiet, busy = Simulation('humanoid'), Simulation('humanoid')
    for _ in range(20):
        quiet.step(10)
        busy.step(10)
        busy.joint_accelerations()
        busy.center_of_pressure()
        busy.base_state()
    np.testing.assert_array_equal(quiet.data.qpos, busy.data.qpos)


def test_fixed_base_imu_reads_gravity():
    base = Simulation('pendulum').base_state()
    np.testing.assert_allclose(base.linear_acceleration, [0.0, 0.0, G], atol=1e-9)
    np.testing.assert_allclose(base.orientation_xyzw, [0.0, 0.0, 0.0, 1.0])
    assert Simulation('pendulum').center_of_pressure() is None  # hangs in the air


def test_render_returns_a_real_image_and_camera_info():
    sim = Simulation('pendulum', render_size=(64, 48))
    try:
        first = sim.render()
        assert first.shape == (48, 64, 3) and first.dtype == np.uint8
        assert first.std() > 5.0
        sim.set_joint_state([1.5])
        moved = sim.render()
        assert np.abs(moved.astype(int) - first.astype(int)).sum() > 0  # the pendulum is in the picture
        info = sim.camera_info()
        assert (info['width'], info['height']) == (64, 48)
        fovy = math.radians(sim.model.cam_fovy[0])
        assert info['fy'] == pytest.approx(24.0 / math.tan(fovy / 2)) and info['fx'] == info['fy']
        assert (info['cx'], info['cy']) == (32.0, 24.0) and info['frame_id']
    finally:
        sim.close()
    with pytest.raises(RuntimeError):
        sim.render()
    with pytest.raises(RuntimeError):
        Simulation('pendulum').render()
    for bad in ((0, 10), 64, (64.0, 48.0), (64, 48, 3)):
        with pytest.raises(ValueError):
            Simulation('pendulum', render_size=bad)


def test_humanoid_render_shows_the_robot():
    sim = Simulation('humanoid', render_size=(80, 60))
    try:
        image = sim.render()
        # the blue torso is in view
        blue = (image[..., 2].astype(int) - image[..., 0].astype(int)) > 60
        assert blue.sum() > 10
    finally:
        sim.close()


def test_floating_base_state_conventions():
    sim = Simulation('humanoid')
    sim.apply_push([0.0, 0.0, 0.0], 0.1, torque_xyz=[0.0, 0.0, 20.0])
    sim.step(50)
    qpos, qvel = sim.floating_base_state()
    base = sim.base_state()
    np.testing.assert_allclose(base.orientation_xyzw, [*qpos[4:7], qpos[3]])
    np.testing.assert_allclose(base.position, qpos[0:3])
    np.testing.assert_allclose(base.angular_velocity, qvel[3:6], atol=1e-12)  # gyro = body-frame rate
    assert base.angular_velocity[2] > 0.01  # the yaw torque turned it
    assert mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_BODY, 'left_sole') > 0
