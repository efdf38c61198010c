"""Training data for the world models: simulated trajectories under exciting, smoothed random efforts.

Every trajectory starts from a random state near the robot's rest posture and is driven by an Ornstein-Uhlenbeck
(exponentially smoothed Gaussian) effort with a correlation time of 0.2 s and a per-trajectory amplitude drawn in
[0.1, 1] of the robot's excitation level, so the data set holds near-passive and strongly driven motion alike.

- pendulum, acrobot: the effort is the input, nothing else (acrobot: elbow only, the shoulder is passive).
- cartpole: the effort plus a weak PD hold of the cart at 0 (kp 10 N/m, kd 4 N s/m), computed once per control
  step and held, so the cart stays clear of its rail stops; the pole is passive. The cart starts anywhere within
  +-1.2 m (the swing-up planner's envelope), the pole at any angle.
- humanoid: the simulation's 1 kHz PD hold of the nominal posture plus the random feed-forward effort (10 % of each
  joint's effort limit), from a standing start. A trajectory in which the robot falls (base below 0.35 m or tilted
  more than 45 degrees) is discarded and redrawn from the same random stream with half the amplitude, so every stored
  trajectory is one continuous stretch of physics; ``redrawn`` counts these. Fixed-base trajectories that come
  within 0.1 rad (m) of a joint stop (the hinges stop at +-2 turns, the cart at +-2 m) are redrawn the same way,
  so the data holds no impacts.

``action`` is the effort that actually acted on the joints: for the fixed-base robots the held command (exact, it
is constant over the control step); for the humanoid the PD + feed-forward actuator effort averaged over the physics
steps of the control step, or, with ``action_source='feedforward'``, the held feed-forward effort alone (the PD hold
then belongs to the plant a model learns: its spring and damper are a potential and a dissipation). Everything is
reproducible from ``seed`` (numpy ``SeedSequence`` spawned per trajectory).
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from hamwm_ros.runtime.metadata import ACTION_SOURCES
from hamwm_ros.sim.robots import ROBOTS
from hamwm_ros.sim.simulation import Simulation, SimulationError

_CORRELATION_TIME = 0.2  # s, smoothing of the random effort
_EXCITATION = {'pendulum': 0.6, 'cartpole': 0.5, 'acrobot': 0.25, 'humanoid': 0.1}  # x effort limit
_FALL_HEIGHT = 0.35  # m, humanoid base height counted as a fall
_FALL_TILT = math.radians(45.0)
_MAX_REDRAWS = 8
_LIMIT_MARGIN = 0.1  # rad or m: fixed-base trajectories that come this close to a joint stop are redrawn
# m: cart-pole trajectories start anywhere in the swing-up planner's envelope (60 % of the +-2 m rail), so the model
# has seen the pole swung with the cart out there; from starts within +-0.5 m the data reached 1.3 m only rarely
_CART_START = 1.2


def _initial_state(robot: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random initial joint positions and velocities around rest (fixed-base robots)."""
    if robot == 'pendulum':
        return rng.uniform(-2.0, 2.0, n), rng.uniform(-2.0, 2.0, n)
    if robot == 'cartpole':
        return (np.array([rng.uniform(-_CART_START, _CART_START), rng.uniform(-math.pi, math.pi)]),
                rng.uniform(-1.0, 1.0, n))
    if robot == 'acrobot':
        return rng.uniform(-1.0, 1.0, n), rng.uniform(-0.5, 0.5, n)
    raise ValueError(robot)


def _tilt(orientation_xyzw: np.ndarray) -> float:
    """Angle between the base's z axis and the world's z axis."""
    x, y = orientation_xyzw[0], orientation_xyzw[1]
    # z-component of the rotated z axis is 1 - 2 (x^2 + y^2)
    return math.acos(max(-1.0, min(1.0, 1.0 - 2.0 * (x * x + y * y))))


def generate_rollouts(robot: str, n_trajectories: int, steps: int, control_dt: float, seed: int,
                      render_size: tuple[int, int] | None = None, timestep: float = 0.001,
                      action_source: str = 'applied') -> dict:
    """Simulate ``n_trajectories`` trajectories of ``steps`` control steps each.

    Parameters
    ----------
    robot
        One of :data:`hamwm_ros.sim.ROBOTS`.
    n_trajectories
        Number of trajectories N (>= 1).
    steps
        Control steps T per trajectory (>= 1); T + 1 states are stored.
    control_dt
        Seconds per control step; a whole multiple of ``timestep``.
    seed
        Non-negative integer; the same seed gives the same data.
    render_size
        ``(width, height)`` to also store scene-camera images, or None.
    timestep
        Physics step, s (default 1 ms).
    action_source
        ``'applied'`` (the effort that acted on the joints) or ``'feedforward'`` (the held command alone; differs
        from 'applied' only where the simulation runs a PD hold, the humanoid). The same seed gives the same motion
        for either.

    Returns
    -------
    dict
        ``position``, ``velocity`` (N, T+1, n); ``action`` (N, T, n) applied effort; ``dt`` (float, = control_dt);
        ``joint_names`` (list); ``images`` (N, T+1, H, W, 3) uint8 when ``render_size`` is given; also
        ``effort_limits`` (n,), ``robot``, ``seed``, ``redrawn`` (N,) int, and for the humanoid ``base_position``
        (N, T+1, 3) and ``base_orientation_xyzw`` (N, T+1, 4).

    Raises
    ------
    ValueError
        On an unknown robot, non-positive counts, a negative seed or a control_dt that is not a positive whole
        multiple of ``timestep``.
    RuntimeError
        If a trajectory still falls (or reaches a joint stop) after repeated redraws at reduced amplitude.
    """
    if robot not in ROBOTS:
        raise ValueError(f'unknown robot {robot!r}; choose one of {", ".join(ROBOTS)}')
    if action_source not in ACTION_SOURCES:
        raise ValueError(f'action_source must be one of {ACTION_SOURCES}, got {action_source!r}')
    for name, value in (('n_trajectories', n_trajectories), ('steps', steps)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f'{name} must be a positive integer, got {value!r}')
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f'seed must be a non-negative integer, got {seed!r}')
    if not (isinstance(control_dt, (int, float)) and math.isfinite(control_dt) and control_dt > 0):
        raise ValueError(f'control_dt must be a positive number, got {control_dt!r}')
    substeps = round(control_dt / timestep)
    if substeps < 1 or abs(substeps * timestep - control_dt) > 1e-9:
        raise ValueError(f'control_dt {control_dt} must be a whole multiple of the physics timestep {timestep}')

    sim = Simulation(robot, timestep=timestep, render_size=render_size)
    try:
        return _generate(sim, robot, int(n_trajectories), int(steps), float(control_dt), substeps, int(seed),
                         render_size, action_source == 'feedforward')
    finally:
        sim.close()


def _generate(sim: Simulation, robot: str, n_traj: int, steps: int, control_dt: float, substeps: int, seed: int,
              render_size: tuple[int, int] | None, feedforward: bool = False) -> dict:
    n = sim.n_joints
    position = np.zeros((n_traj, steps + 1, n))
    velocity = np.zeros((n_traj, steps + 1, n))
    action = np.zeros((n_traj, steps, n))
    redrawn = np.zeros(n_traj, dtype=np.int64)
    images = None
    if render_size is not None:
        images = np.zeros((n_traj, steps + 1, int(render_size[1]), int(render_size[0]), 3), dtype=np.uint8)
    base_pos = np.zeros((n_traj, steps + 1, 3)) if sim.floating_base else None
    base_quat = np.zeros((n_traj, steps + 1, 4)) if sim.floating_base else None

    alpha = math.exp(-control_dt / _CORRELATION_TIME)
    sigma = _EXCITATION[robot] * sim.effort_limits
    children = np.random.SeedSequence(seed).spawn(n_traj)
    for i, child in enumerate(children):
        rng = np.random.default_rng(child)
        scale = rng.uniform(0.1, 1.0)
        for attempt in range(_MAX_REDRAWS + 1):
            ok = _one(sim, robot, rng, scale * 0.5**attempt, alpha, sigma, steps, substeps, i,
                      position, velocity, action, images, base_pos, base_quat, feedforward)
            if ok:
                redrawn[i] = attempt
                break
        else:
            raise RuntimeError(f'{robot}: trajectory {i} fell or hit a joint stop {_MAX_REDRAWS + 1} times, even at '
                               'reduced amplitude')
    out = {'position': position, 'velocity': velocity, 'action': action, 'dt': control_dt,
           'joint_names': list(sim.joint_names), 'effort_limits': sim.effort_limits.copy(), 'robot': robot,
           'seed': seed, 'redrawn': redrawn, 'action_source': 'feedforward' if feedforward else 'applied'}
    if images is not None:
        out['images'] = images
    if sim.floating_base:
        out['base_position'] = base_pos
        out['base_orientation_xyzw'] = base_quat
    return out


def _one(sim: Simulation, robot: str, rng: np.random.Generator, amplitude: float, alpha: float, sigma: np.ndarray,
         steps: int, substeps: int, i: int, position, velocity, action, images, base_pos, base_quat,
         feedforward: bool = False) -> bool:
    """Simulate trajectory ``i`` into the output arrays; False if it fell or neared a stop (the caller redraws)."""
    n = sim.n_joints
    if sim.floating_base:
        sim.reset(seed=int(rng.integers(0, 2**31)))  # standing, PD hold armed, small posture noise
        sim.step(int(round(0.2 / sim.timestep)))  # settle onto the contacts before recording
        sim.data.time = 0.0
    else:
        sim.reset()
        sim.set_joint_state(*_initial_state(robot, rng, n))
    noise = rng.standard_normal(n) * sigma * amplitude
    hold_kp = np.array([10.0, 0.0]) if robot == 'cartpole' else np.zeros(n)
    hold_kd = np.array([4.0, 0.0]) if robot == 'cartpole' else np.zeros(n)
    mj_data = sim.data
    qadr, dof = sim.joint_qpos_indices, sim.joint_dof_indices
    lower = sim.position_limits[:, 0] + _LIMIT_MARGIN
    upper = sim.position_limits[:, 1] - _LIMIT_MARGIN
    for t in range(steps + 1):
        q, v = mj_data.qpos[qadr], mj_data.qvel[dof]
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(v))):
            return False
        position[i, t], velocity[i, t] = q, v
        if images is not None:
            images[i, t] = sim.render()
        if not sim.floating_base and np.any((q < lower) | (q > upper)):
            return False  # near a joint stop: redraw, so the data holds no impacts
        if sim.floating_base:
            base = sim.base_state()
            base_pos[i, t], base_quat[i, t] = base.position, base.orientation_xyzw
            if base.position[2] < _FALL_HEIGHT or _tilt(base.orientation_xyzw) > _FALL_TILT:
                return False
        if t == steps:
            break
        noise = alpha * noise + math.sqrt(1.0 - alpha**2) * rng.standard_normal(n) * sigma * amplitude
        command = noise - hold_kp * q - hold_kd * v
        sim.set_effort(np.clip(command, -sim.effort_limits, sim.effort_limits))
        try:
            if sim.floating_base:
                applied = np.zeros(n)
                for _ in range(substeps):
                    mujoco.mj_step(sim.model, mj_data)  # no push is active: plain steps, checked below
                    applied += mj_data.qfrc_actuator[dof]  # the effort used in the step just taken
                sim.step(0)  # marks derived quantities stale, raises SimulationError if MuJoCo saw divergence
                action[i, t] = sim.held_effort if feedforward else applied / substeps
            else:
                sim.step(substeps)
                action[i, t] = sim.held_effort
        except SimulationError:
            return False
    return True
