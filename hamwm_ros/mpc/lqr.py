"""Linear-quadratic tools for terminal costs: rigid-body linearisation and the discrete LQR value function.

A sampling planner sees only its horizon. Balancing a cart-pole, the slow mode (the cart drifting off while the pole
stays up) takes longer to correct than the horizon lasts, because the cart must first move the wrong way to tilt the
pole back; a plan that sees only 0.64 s rates drifting as cheap as correcting it. The infinite-horizon LQR value
``e^T P e`` of the physical robot linearised at the goal prices the cost beyond the horizon, so a terminal cost made
of it (:class:`hamwm_ros.mpc.critics.TerminalCostCritic`) lets MPPI pick the plans that end on the way back.

The linearisation is of the URDF's rigid-body dynamics (Pinocchio's analytical ABA derivatives), not of the learned
model: it shapes the cost only; the plans are still predicted by the world model.

Imports neither rclpy nor torch; Pinocchio is imported by :func:`linearise` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def expm(matrix: np.ndarray) -> np.ndarray:
    """Matrix exponential by scaling and squaring of a Taylor series (small, well-scaled matrices).

    The scaling brings the 1-norm to 0.25 or below, where 18 terms leave a remainder below 1e-16 relative: machine
    precision for the (2 n + m)-square matrices of :func:`discretise`.
    """
    a = np.asarray(matrix, dtype=np.float64)
    norm = float(np.linalg.norm(a, 1)) if a.size else 0.0
    squarings = max(0, int(np.ceil(np.log2(norm / 0.25)))) if norm > 0.25 else 0
    scaled = a / (2.0 ** squarings)
    result = np.eye(a.shape[0])
    term = np.eye(a.shape[0])
    for k in range(1, 19):
        term = term @ scaled / k
        result = result + term
    for _ in range(squarings):
        result = result @ result
    return result


def discretise(a_cont: np.ndarray, b_cont: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero-order-hold discretisation of x' = A x + B u over ``dt`` (inputs held over the step, as the planner's).

    Raises
    ------
    ValueError
        If the shapes disagree or ``dt`` is not positive.
    """
    a_cont = np.atleast_2d(np.asarray(a_cont, dtype=np.float64))
    b_cont = np.asarray(b_cont, dtype=np.float64).reshape(a_cont.shape[0], -1)
    if a_cont.shape[0] != a_cont.shape[1]:
        raise ValueError(f'A must be square, got {a_cont.shape}')
    if not dt > 0.0:
        raise ValueError(f'dt must be > 0, got {dt}')
    n, m = b_cont.shape
    block = np.zeros((n + m, n + m))
    block[:n, :n] = a_cont
    block[:n, n:] = b_cont
    exp = expm(block * dt)
    return exp[:n, :n], exp[:n, n:]


def discrete_lqr(a: np.ndarray, b: np.ndarray, q: np.ndarray, r: np.ndarray, *, tolerance: float = 1e-10,
                 max_iterations: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Value matrix P and gain K of the infinite-horizon discrete LQR (x' = A x + B u, cost sum x'Qx + u'Ru).

    Solves the discrete algebraic Riccati equation by value iteration from P = Q (numpy only). The optimal cost from
    x is ``x^T P x`` and the optimal input ``u = -K x``.

    Parameters
    ----------
    a, b
        (n, n) and (n, m) discrete dynamics.
    q, r
        (n, n) symmetric positive semi-definite state cost and (m, m) symmetric positive definite input cost.
    tolerance
        Relative change of P between iterations at which the iteration stops.
    max_iterations
        Iteration cap.

    Returns
    -------
    tuple of numpy.ndarray
        ``(P, K)``: P (n, n) symmetric positive semi-definite, K (m, n).

    Raises
    ------
    ValueError
        If shapes disagree, a value is not finite, R is not positive definite, or the iteration does not converge
        (an unstable mode the input cannot reach: the cost-to-go is infinite).
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.asarray(b, dtype=np.float64).reshape(a.shape[0], -1)
    q = np.atleast_2d(np.asarray(q, dtype=np.float64))
    r = np.atleast_2d(np.asarray(r, dtype=np.float64))
    n, m = b.shape
    if a.shape != (n, n) or q.shape != (n, n) or r.shape != (m, m):
        raise ValueError(f'shapes disagree: A {a.shape}, B {b.shape}, Q {q.shape}, R {r.shape}')
    if not all(np.all(np.isfinite(x)) for x in (a, b, q, r)):
        raise ValueError('A, B, Q and R must be finite')
    q = 0.5 * (q + q.T)
    r = 0.5 * (r + r.T)
    if np.min(np.linalg.eigvalsh(r)) <= 0.0:
        raise ValueError('R must be positive definite')
    if np.min(np.linalg.eigvalsh(q)) < -1e-12 * max(1.0, float(np.max(np.abs(q)))):
        raise ValueError('Q must be positive semi-definite')
    p = q.copy()
    with np.errstate(over='ignore', invalid='ignore'):    # a diverging iteration is reported below
        for _ in range(max_iterations):
            gain = np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
            p_next = q + a.T @ p @ (a - b @ gain)
            p_next = 0.5 * (p_next + p_next.T)
            if not np.all(np.isfinite(p_next)):
                break
            if np.max(np.abs(p_next - p)) <= tolerance * max(1.0, float(np.max(np.abs(p_next)))):
                return p_next, np.linalg.solve(r + b.T @ p_next @ b, b.T @ p_next @ a)
            p = p_next
    raise ValueError('the LQR iteration did not converge: an unstable mode the input cannot reach '
                     '(uncontrollable) has infinite cost-to-go')


def linearise(urdf: str | Path, joint_names: Sequence[str], position: Sequence[float], actuated: Sequence[int],
              dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Discrete linear dynamics of a fixed-base URDF robot at rest at ``position``, held efforts on ``actuated``.

    The state is (positions, velocities) in ``joint_names`` order (the world model's observation layout); the inputs
    are the efforts of the joints ``actuated`` (indices into ``joint_names``), perturbing those that hold the robot
    at rest there (gravity compensation, from RNEA). Continuous A, B come from Pinocchio's analytical ABA
    derivatives and are discretised with a zero-order hold over ``dt``.

    Parameters
    ----------
    urdf
        Path of a URDF file, or URDF XML text (first non-blank character ``<``).
    joint_names
        The state's joint order; every joint must have one degree of freedom.
    position
        (n,) linearisation point, ``joint_names`` order.
    actuated
        Indices of the input joints.
    dt
        Step of the discrete model (the world model's).

    Returns
    -------
    tuple of numpy.ndarray
        ``(A, B)``: (2 n, 2 n) and (2 n, len(actuated)).

    Raises
    ------
    ValueError
        If the URDF cannot be read, names a joint it lacks or one with more than one degree of freedom, has a
        floating base or joints left unnamed (more velocities than the joints named), or sizes disagree.
    """
    import pinocchio as pin

    text = str(urdf)
    try:
        model = pin.buildModelFromXML(text) if text.lstrip().startswith('<') else pin.buildModelFromUrdf(text)
    except (RuntimeError, ValueError, OSError) as error:
        raise ValueError(f'cannot read the URDF to linearise: {error}') from None
    names = list(joint_names)
    n = len(names)
    q_point = np.asarray(position, dtype=np.float64).ravel()
    if q_point.shape != (n,) or not np.all(np.isfinite(q_point)):
        raise ValueError(f'position needs {n} finite values, got {q_point.size}')
    inputs = [int(i) for i in actuated]
    if not inputs or any(not 0 <= i < n for i in inputs):
        raise ValueError(f'actuated must be indices of the {n} joints, got {inputs}')
    if model.nv != n:
        raise ValueError(f'the URDF has {model.nv} velocities for {n} named joints: linearise needs every joint of '
                         f'a fixed-base robot named')
    order = []
    for name in names:
        if not model.existJointName(name):
            raise ValueError(f'the URDF has no joint {name!r}')
        joint = model.joints[model.getJointId(name)]
        if joint.nq != 1 or joint.nv != 1:
            raise ValueError(f'joint {name!r} has {joint.nv} degrees of freedom; linearise needs 1 per joint')
        order.append(joint.idx_v)
    order = np.asarray(order)
    q = np.zeros(model.nq)
    q[order] = q_point
    v = np.zeros(model.nv)
    data = model.createData()
    tau = pin.rnea(model, data, q, v, np.zeros(model.nv))      # the efforts that hold the robot at rest here
    pin.computeABADerivatives(model, data, q, v, tau)
    ddq_dq = np.asarray(data.ddq_dq)[np.ix_(order, order)]
    ddq_dv = np.asarray(data.ddq_dv)[np.ix_(order, order)]
    minv = np.asarray(data.Minv)
    minv = np.triu(minv) + np.triu(minv, 1).T                 # Pinocchio fills the upper triangle only
    ddq_dtau = minv[np.ix_(order, order)][:, inputs]
    a_cont = np.block([[np.zeros((n, n)), np.eye(n)], [ddq_dq, ddq_dv]])
    b_cont = np.vstack([np.zeros((n, len(inputs))), ddq_dtau])
    return discretise(a_cont, b_cont, dt)


__all__ = ['discrete_lqr', 'discretise', 'expm', 'linearise']
