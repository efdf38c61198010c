"""Linearisation and LQR value for terminal costs (``hamwm_ros.mpc.lqr``).

Cross-checks in Pinocchio's manner: the discretisation against the closed form of a double integrator, the Riccati
solution against the scalar closed form and against the summed cost of simulating the closed loop, and Pinocchio's
analytical linearisation against finite differences of MuJoCo's nonlinear simulation over one step.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hamwm_ros.mpc.lqr import discrete_lqr, discretise, expm, linearise
from hamwm_ros.mpc.swingup import pole_inertia
from hamwm_ros.sim import Simulation, parse_urdf_joints, robot_urdf_path


def test_expm_of_a_rotation_generator_and_a_large_diagonal():
    t = 2.5
    rotation = expm(np.array([[0.0, -t], [t, 0.0]]))
    assert rotation == pytest.approx(np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]), abs=1e-12)
    assert np.diag(expm(np.diag([-30.0, 0.0, 4.0]))) == pytest.approx(np.exp([-30.0, 0.0, 4.0]), rel=1e-10)


def test_zero_order_hold_of_a_double_integrator_is_exact():
    dt = 0.02
    a, b = discretise(np.array([[0.0, 1.0], [0.0, 0.0]]), np.array([0.0, 1.0]), dt)
    assert a == pytest.approx(np.array([[1.0, dt], [0.0, 1.0]]), abs=1e-14)
    assert b.ravel() == pytest.approx([0.5 * dt * dt, dt], abs=1e-14)
    with pytest.raises(ValueError, match='dt'):
        discretise(np.eye(2), np.ones(2), 0.0)


@pytest.mark.parametrize('a, b, q, r', [(1.2, 0.5, 1.0, 0.1), (0.9, 2.0, 3.0, 5.0), (-1.5, 1.0, 0.5, 1.0)])
def test_scalar_riccati_matches_its_closed_form(a, b, q, r):
    # p (r + b^2 p) = (q + a^2 p)(r + b^2 p) - a^2 b^2 p^2  ->  b^2 p^2 + (r - q b^2 - a^2 r) p - q r = 0
    c = r - q * b * b - a * a * r
    expected = (-c + math.sqrt(c * c + 4 * b * b * q * r)) / (2 * b * b)
    p, k = discrete_lqr(np.array([[a]]), np.array([[b]]), np.array([[q]]), np.array([[r]]))
    assert p[0, 0] == pytest.approx(expected, rel=1e-8)
    assert k[0, 0] == pytest.approx(b * expected * a / (r + b * b * expected), rel=1e-8)


def _cartpole_upright(dt: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    names = parse_urdf_joints(robot_urdf_path('cartpole')).names
    return linearise(robot_urdf_path('cartpole'), names, [0.0, math.pi], [0], dt)


def test_value_is_the_summed_cost_of_the_optimal_closed_loop():
    """x0' P x0 equals sum_t x_t' Q x_t + u_t' R u_t along the closed loop u = -K x, which is stable."""
    a, b = _cartpole_upright()
    q, r = np.diag([0.2, 1.0, 0.2, 0.05]), np.array([[0.01 / 12.0 ** 2]])
    p, k = discrete_lqr(a, b, q, r)
    closed = a - b @ k
    assert np.max(np.abs(np.linalg.eigvals(closed))) < 1.0
    assert np.min(np.linalg.eigvalsh(p)) > 0 and p == pytest.approx(p.T)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x0 = rng.normal(size=4) * [0.3, 0.2, 0.5, 0.5]
        x, total = x0.copy(), 0.0
        for _ in range(5000):
            u = -k @ x
            total += x @ q @ x + u @ r @ u
            x = closed @ x
        assert total == pytest.approx(x0 @ p @ x0, rel=1e-8)


def test_riccati_refuses_what_has_no_finite_value():
    with pytest.raises(ValueError, match='uncontrollable'):     # unstable and the input cannot reach it
        discrete_lqr(np.diag([2.0, 0.5]), np.array([[0.0], [1.0]]), np.eye(2), np.eye(1))
    with pytest.raises(ValueError, match='positive definite'):
        discrete_lqr(np.eye(2), np.ones((2, 1)), np.eye(2), np.zeros((1, 1)))
    with pytest.raises(ValueError, match='shapes'):
        discrete_lqr(np.eye(2), np.ones((2, 1)), np.eye(3), np.eye(1))
    with pytest.raises(ValueError, match='finite'):
        discrete_lqr(np.eye(2) * np.nan, np.ones((2, 1)), np.eye(2), np.eye(1))


def test_upright_pendulum_linearisation_matches_the_rigid_pendulum():
    """About upright theta'' = (m g l / I) (theta - pi) + tau / I, with the URDF's mass, lever and inertia."""
    names = parse_urdf_joints(robot_urdf_path('pendulum')).names
    mass, lever, inertia = pole_inertia(robot_urdf_path('pendulum'), names[0])
    dt = 0.02
    a, b = linearise(robot_urdf_path('pendulum'), names, [math.pi], [0], dt)
    expected_a, expected_b = discretise(np.array([[0.0, 1.0], [mass * 9.81 * lever / inertia, 0.0]]),
                                        np.array([0.0, 1.0 / inertia]), dt)
    assert a == pytest.approx(expected_a, rel=1e-3)     # Pinocchio's g is 9.81 to three digits
    assert b == pytest.approx(expected_b, rel=1e-6)


def test_cartpole_linearisation_matches_mujoco_finite_differences():
    """A, B from Pinocchio's ABA derivatives against one 20 ms step of MuJoCo's nonlinear simulation (RK4)."""
    import mujoco

    dt, eps = 0.02, 1e-4
    a, b = _cartpole_upright(dt)
    sim = Simulation('cartpole', timestep=0.0005)
    sim.model.opt.integrator = mujoco.mjtIntegrator.mjINT_RK4

    def step(x: np.ndarray, force: float) -> np.ndarray:
        sim.reset()
        sim.set_joint_state(x[:2], x[2:])
        sim.set_effort([force, 0.0])
        sim.step(int(round(dt / sim.timestep)))
        state = sim.joint_state()
        return np.concatenate([state.position, state.velocity])

    x0 = np.array([0.0, math.pi, 0.0, 0.0])
    numeric_a = np.column_stack([(step(x0 + eps * e, 0.0) - step(x0 - eps * e, 0.0)) / (2 * eps) for e in np.eye(4)])
    numeric_b = (step(x0, eps) - step(x0, -eps)) / (2 * eps)
    assert a == pytest.approx(numeric_a, abs=2e-4)
    assert b.ravel() == pytest.approx(numeric_b, abs=2e-5)


def test_linearise_refuses_what_it_cannot_linearise():
    names = parse_urdf_joints(robot_urdf_path('cartpole')).names
    with pytest.raises(ValueError, match='no joint'):
        linearise(robot_urdf_path('cartpole'), ['cart_slider', 'elbow'], [0.0, 0.0], [0], 0.02)
    with pytest.raises(ValueError, match='2 velocities for 1 named joints'):     # every joint is state
        linearise(robot_urdf_path('cartpole'), ['cart_slider'], [0.0], [0], 0.02)
    with pytest.raises(ValueError, match='actuated'):
        linearise(robot_urdf_path('cartpole'), names, [0.0, 0.0], [5], 0.02)
    with pytest.raises(ValueError, match='cannot read'):
        linearise('<robot name="broken">', names, [0.0, 0.0], [0], 0.02)
    text = robot_urdf_path('cartpole').read_text()     # URDF text works as well as a path
    assert linearise(text, names, [0.0, math.pi], [0], 0.02)[0] == pytest.approx(_cartpole_upright()[0])
