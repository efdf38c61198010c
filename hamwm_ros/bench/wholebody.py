"""``hamwm bench wholebody``: cost and accuracy of the whole-body balance module on the shipped humanoid.

1. Per control tick, CoM + ZMP + margin (``WholeBodyModel.tick``) against the bare Pinocchio calls it wraps
   (``computeCentroidalMomentumTimeVariation`` + ``updateFramePlacement`` per sole), and against those calls plus
   reading their outputs through Pinocchio's accessors (``data.com[0]``, ``data.dhg``, the returned placements).
   The tick itself reads through numpy views of ``data`` made once, so it can undercut that second baseline. Also
   the full ``evaluate`` (momentum, capture point, polygon object) and ``BalanceEstimator.update`` (state assembly
   from joint arrays + IMU/odometry, + stance-foot kinematics, or + stance kinematics and joint efforts).
2. The batched path: B x H predicted states scored per second (``BatchedBalance.evaluate``), its ``linearise``
   cost, and its error against the exact per-state path on fixed-seed trajectories.
3. ZMP against MuJoCo's contact centre of pressure per scenario (``--proof``; ~40 s).

Medians over ``--repeats`` blocks. The tick and its two baselines are timed in alternating blocks and their ratios
are medians of the per-block ratios (robust to load changing during the run on a shared machine).
Single-threaded BLAS is what the control loop should run with (``OMP_NUM_THREADS=1``); the batched figures
depend on it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np
import pinocchio as pin

from hamwm_ros.cli import HelpFormatter
from hamwm_ros.wholebody.batch import BatchedBalance
from hamwm_ros.wholebody.estimator import BalanceEstimator, BaseMeasurement
from hamwm_ros.wholebody.model import WholeBodyModel

SOLES = ('left_sole', 'right_sole')
CLOCKS = {'wall': time.perf_counter, 'thread': time.thread_time}  # --clock: thread CPU time ignores preemption
_clock = time.perf_counter


def _per_call_us(fn, calls: int, repeats: int) -> float:
    """Median over ``repeats`` blocks of the per-call time of ``fn`` in microseconds."""
    for _ in range(max(1, calls // 10)):
        fn()
    blocks = []
    for _ in range(repeats):
        start = _clock()
        for _ in range(calls):
            fn()
        blocks.append((_clock() - start) / calls * 1e6)
    return statistics.median(blocks)


def _interleaved_us(fns: dict[str, Any], calls: int, repeats: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Per-call times (us) of several functions timed in alternating blocks, so load changes hit all alike.

    Returns
    -------
    tuple
        Median per-call time of each function, and every block's time (for per-block ratios).
    """
    for fn in fns.values():
        for _ in range(max(1, calls // 10)):
            fn()
    blocks: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = _clock()
            for _ in range(calls):
                fn()
            blocks[name].append((_clock() - start) / calls * 1e6)
    return {name: statistics.median(times) for name, times in blocks.items()}, blocks


def standing_posture(wb: WholeBodyModel) -> np.ndarray:
    """Slightly crouched standing posture of the shipped humanoid."""
    q = np.zeros(wb.n_joints)
    for side in ('left', 'right'):
        q[wb.joint_names.index(f'{side}_hip_pitch')] = -0.25
        q[wb.joint_names.index(f'{side}_knee')] = 0.5
        q[wb.joint_names.index(f'{side}_ankle_pitch')] = -0.25
    return q


def tick_costs(wb: WholeBodyModel, calls: int, repeats: int) -> dict[str, float]:
    """Per-tick costs (us) of the module and of the bare Pinocchio calls, one representative moving state."""
    rng = np.random.default_rng(0)
    qj = standing_posture(wb)
    vj = rng.normal(size=wb.n_joints) * 0.2
    aj = rng.normal(size=wb.n_joints) * 0.5
    est = BalanceEstimator(wb)
    state = est.update(0.0, qj, vj, aj)
    q, v, a = est.last_q, est.last_v, est.last_a
    model, data = wb.model, wb.data
    fids = [f.frame_id for f in wb.feet]
    ccm, ufp = pin.computeCentroidalMomentumTimeVariation, pin.updateFramePlacement

    def bare() -> None:
        ccm(model, data, q, v, a)
        for fid in fids:
            ufp(model, data, fid)

    def bare_reads() -> None:
        ccm(model, data, q, v, a)
        data.com[0].tolist()
        data.dhg.np.tolist()
        for fid in fids:
            ufp(model, data, fid).homogeneous.tolist()

    base = BaseMeasurement(q[:3].copy(), q[3:7].copy(), np.zeros(3), np.zeros(3), np.array([0.0, 0.0, 9.81]))
    clock = [0.0]
    imu_estimator, stance_estimator, effort_estimator = BalanceEstimator(wb), BalanceEstimator(wb), BalanceEstimator(wb)
    efforts = rng.normal(size=wb.n_joints)

    def with_imu() -> None:
        clock[0] += 0.002
        imu_estimator.update(clock[0], qj, vj, None, base=base)

    def with_stance() -> None:
        clock[0] += 0.002
        stance_estimator.update(clock[0], qj, vj, None)

    def with_stance_effort() -> None:
        clock[0] += 0.002
        effort_estimator.update(clock[0], qj, vj, None, joint_efforts=efforts)

    # the tick and its baselines in alternating blocks: their ratio is the median of the per-block ratios
    medians, blocks = _interleaved_us({'bare_calls_us': bare, 'bare_calls_and_reads_us': bare_reads,
                                       'tick_us': lambda: wb.tick(q, v, a)}, calls, repeats)
    results = dict(medians)
    results.update({
        'evaluate_us': _per_call_us(lambda: wb.evaluate(q, v, a), calls, repeats),
        'estimator_imu_us': _per_call_us(with_imu, calls // 2, repeats),
        'estimator_stance_us': _per_call_us(with_stance, calls // 2, repeats),
        'estimator_stance_effort_us': _per_call_us(with_stance_effort, calls // 4, repeats),
    })
    for key, baseline in (('tick_over_bare_calls', 'bare_calls_us'),
                          ('tick_over_bare_calls_and_reads', 'bare_calls_and_reads_us')):
        results[key] = statistics.median(t / b for t, b in zip(blocks['tick_us'], blocks[baseline]))
    results['margin_m'] = state.margin
    return results


def batched(wb: WholeBodyModel, batch: int, horizon: int, repeats: int) -> dict[str, Any]:
    """Batched throughput and error against the exact path."""
    rng = np.random.default_rng(1)
    dt = 0.02
    qj = standing_posture(wb)
    v0 = rng.normal(size=wb.n_joints) * 0.1
    est = BalanceEstimator(wb)
    state = est.update(0.0, qj, v0, np.zeros(wb.n_joints))
    bb = BatchedBalance(wb)
    start = time.perf_counter()
    bb.linearise(est.last_q, est.stance, state.support_polygon)
    linearise_ms = (time.perf_counter() - start) * 1e3
    pos = qj + rng.normal(size=(batch, horizon, wb.n_joints)) * 0.05
    vel = v0 + rng.normal(size=(batch, horizon, wb.n_joints)) * 0.2
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        bb.evaluate(pos, vel, dt, v0)
        times.append(time.perf_counter() - start)
    evaluate_ms = statistics.median(times) * 1e3

    t = (np.arange(1, horizon + 1) * dt)[None, :, None]
    accuracy = []
    for amplitude in (0.02, 0.05, 0.1):
        n = wb.n_joints
        w = 2 * np.pi * rng.uniform(0.3, 1.5, (8, 1, n))
        phase = rng.uniform(0, 2 * np.pi, (8, 1, n))
        amp = amplitude * rng.uniform(0.3, 1.0, (8, 1, n))
        p = qj + v0 * t + amp * (np.sin(w * t + phase) - np.sin(phase) - w * np.cos(phase) * t)
        v = v0 + amp * w * (np.cos(w * t + phase) - np.cos(phase))
        exact = bb.exact(p, v, dt, v0, est.stance, est.anchor)
        row = {'amplitude_rad': amplitude, 'max_dq_rad': float(np.abs(p - qj).max()),
               'max_v_rad_s': float(np.abs(v).max())}
        for mode in ('current', 'nominal'):
            if mode == 'nominal':  # linearise along the mean of the samples, as an MPPI would along its plan
                nominal = BatchedBalance(wb)
                start = time.perf_counter()
                nominal.linearise(est.last_q, est.stance, state.support_polygon, p.mean(axis=0), est.anchor)
                row['nominal_linearise_ms'] = (time.perf_counter() - start) * 1e3
                result = nominal.evaluate(p, v, dt, v0)
            else:
                result = bb.evaluate(p, v, dt, v0)
            com = np.linalg.norm(result.com - exact.com, axis=-1)
            zmp = np.linalg.norm(result.zmp - exact.zmp, axis=-1)
            row[f'{mode}_com_rms_mm'] = float(np.sqrt(np.mean(com ** 2)) * 1e3)
            row[f'{mode}_com_max_mm'] = float(com.max() * 1e3)
            row[f'{mode}_zmp_rms_mm'] = float(np.sqrt(np.mean(zmp ** 2)) * 1e3)
            row[f'{mode}_zmp_max_mm'] = float(zmp.max() * 1e3)
        accuracy.append(row)
    return {'batch': batch, 'horizon': horizon, 'linearise_ms': linearise_ms, 'evaluate_ms': evaluate_ms,
            'states_per_s': batch * horizon / (evaluate_ms * 1e-3), 'accuracy': accuracy}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables; return 0 (1 if a target is missed and ``--strict``)."""
    parser = argparse.ArgumentParser(prog='hamwm bench wholebody', description=__doc__.split('\n\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--calls', type=int, default=2000, help='calls per timing block')
    parser.add_argument('--repeats', type=int, default=15, help='timing blocks (median over them)')
    parser.add_argument('--batch', type=int, default=1024, help='predicted trajectories per batched evaluation')
    parser.add_argument('--horizon', type=int, default=32, help='steps per predicted trajectory')
    parser.add_argument('--proof', action='store_true', help='also run the MuJoCo ZMP-vs-CoP scenarios (~40 s)')
    parser.add_argument('--strict', action='store_true', help='exit 1 when a target (30 us, 1.5x) is missed')
    parser.add_argument('--json', action='store_true', help='also print the raw results as JSON')
    parser.add_argument('--clock', choices=sorted(CLOCKS), default='wall',
                        help='per-tick timer: wall clock, or this thread\'s CPU time (steadier on a shared machine)')
    args = parser.parse_args(argv)
    global _clock
    _clock = CLOCKS[args.clock]

    from hamwm_ros.sim import robot_urdf_path

    wb = WholeBodyModel(robot_urdf_path('humanoid'), sole_frames=SOLES)
    print(f'humanoid: {wb.n_joints} joints, nv={wb.model.nv}, {wb.mass:.1f} kg; pinocchio {pin.__version__}')
    ticks = tick_costs(wb, args.calls, args.repeats)
    print('\nper tick (median us)')
    rows = [('bare Pinocchio calls (centroidal momentum rate + sole placements)', 'bare_calls_us'),
            ('bare calls + reading outputs (com, dhg, sole poses)', 'bare_calls_and_reads_us')]
    for label, key in rows:
        print(f'  {label:<68} {ticks[key]:7.2f}')
    print(f"  tick: CoM + ZMP + support polygon + margin                           {ticks['tick_us']:7.2f}"
          f"   x{ticks['tick_over_bare_calls']:.2f} bare calls, x{ticks['tick_over_bare_calls_and_reads']:.2f}"
          ' calls+reads')
    print(f"  evaluate: + momentum, capture point, BalanceState                    {ticks['evaluate_us']:7.2f}")
    print(f"  estimator update, IMU + odometry base (joint arrays -> state)        {ticks['estimator_imu_us']:7.2f}")
    print(f"  estimator update, stance-foot kinematics base                        "
          f"{ticks['estimator_stance_us']:7.2f}")
    print(f"  estimator update, stance kinematics + joint efforts (stance+effort)  "
          f"{ticks['estimator_stance_effort_us']:7.2f}")

    batch = batched(wb, args.batch, args.horizon, max(3, args.repeats // 3))
    print(f"\nbatched {batch['batch']} x {batch['horizon']}: evaluate {batch['evaluate_ms']:.2f} ms "
          f"({batch['states_per_s'] / 1e6:.2f} M states/s), linearise {batch['linearise_ms']:.2f} ms")
    print('  error against the exact per-state path (8 x horizon sinusoidal joint trajectories, mm):')
    print('  amp rad  max|dq|  max|v|   current-state lin.: CoM rms/max  ZMP rms/max   nominal lin.: CoM rms/max  '
          'ZMP rms/max')
    for row in batch['accuracy']:
        print(f"  {row['amplitude_rad']:6.2f}  {row['max_dq_rad']:6.3f}  {row['max_v_rad_s']:6.2f}"
              f"   {row['current_com_rms_mm']:8.2f}/{row['current_com_max_mm']:<7.2f}"
              f"  {row['current_zmp_rms_mm']:6.2f}/{row['current_zmp_max_mm']:<7.2f}"
              f"   {row['nominal_com_rms_mm']:8.2f}/{row['nominal_com_max_mm']:<7.2f}"
              f"  {row['nominal_zmp_rms_mm']:6.2f}/{row['nominal_zmp_max_mm']:<7.2f}")
    print(f"  (nominal linearisation costs {batch['accuracy'][0]['nominal_linearise_ms']:.1f} ms per tick for "
          f"H={args.horizon})")

    results: dict[str, Any] = {'tick': ticks, 'batched': batch}
    if args.proof:
        from hamwm_ros.wholebody.proof import SCENARIOS, run_scenario

        print('\nZMP vs MuJoCo contact CoP, RMS (max) in mm')
        results['proof'] = {}
        for name in SCENARIOS:
            r = run_scenario(name)
            results['proof'][name] = {'samples': r.samples, 'rms_mm': {k: x * 1e3 for k, x in r.rms.items()},
                                      'max_mm': {k: x * 1e3 for k, x in r.max_error.items()}}
            print(f'  {name:<6} ' + '  '.join(f'{mode} {r.rms[mode] * 1e3:.4f} ({r.max_error[mode] * 1e3:.3f})'
                                             for mode in r.rms))
    if args.json:
        print(json.dumps(results, indent=2, default=float))
    missed = ticks['tick_us'] > 30.0 or ticks['tick_over_bare_calls'] > 1.5
    if missed:
        print('\nnote: target is <= 30 us per tick and <= 1.5x the bare calls')
    return 1 if (missed and args.strict) else 0
