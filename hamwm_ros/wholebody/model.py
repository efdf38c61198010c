"""Whole-body balance quantities from full multibody dynamics (Pinocchio).

`WholeBodyModel` loads a URDF (file path or ``robot_description`` XML string), with a fixed or a free-flyer base,
and computes for one state ``(q, v, a)``: CoM position and velocity, centroidal momentum and its rate, the ZMP, the
support polygon of the feet in contact, the capture point and the balance margin.

How the ZMP is obtained: Pinocchio's ``computeCentroidalMomentumTimeVariation`` runs the full recursive Newton-Euler
forward pass and returns the centroidal momentum rate ``dh_G`` (every body's inertia, Coriolis and gyroscopic terms,
not a linear inverted pendulum). By Newton-Euler for the whole robot, the non-gravity external wrench about the CoM is
``f = dp/dt - m g`` and ``n_G = dL_G/dt``; the ZMP is the point of the ground plane where that wrench has no
horizontal moment. This equals the base wrench of inverse dynamics ``RNEA(q, v, a)[:6]`` transformed to the world
(the tests cross-check both routes), but costs a single pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
import math
import os
from pathlib import Path
import xml.etree.ElementTree as ET

import numpy as np
import pinocchio as pin

from hamwm_ros.jointmap import JointMap
from hamwm_ros.wholebody.geometry import EdgeTable, convex_hull_indices

# sole rectangle corner signs (x, y), counter-clockwise from above
_CORNERS = ((0.5, -0.5), (0.5, 0.5), (-0.5, 0.5), (-0.5, -0.5))


class WholeBodyError(ValueError):
    """A robot description or balance configuration cannot be used (the message says why)."""


@dataclass(frozen=True)
class Foot:
    """A sole: frame (origin at the sole centre, z normal to the sole) and rectangle size in metres."""

    frame: str
    frame_id: int
    length: float
    width: float


@dataclass
class BalanceState:
    """Balance quantities of one state, world frame (z up, ground plane at ``ground_height``).

    ``momentum`` and ``momentum_rate`` are (linear, angular) about the CoM in world axes. ``zmp`` and
    ``capture_point`` lie on the ground plane; they are NaN when the vertical contact force is not positive (flight,
    free fall), and ``margin`` is then -inf. ``margin`` is the signed distance from the ZMP to the support polygon
    boundary, positive inside, -inf when no foot is in contact.
    """

    com: np.ndarray
    com_velocity: np.ndarray
    momentum: np.ndarray
    momentum_rate: np.ndarray
    zmp: np.ndarray
    capture_point: np.ndarray
    support_polygon: np.ndarray
    contacts: tuple[bool, ...]
    margin: float
    base_source: str = 'given'
    edges: EdgeTable | None = field(default=None, repr=False)

    def capture_margin(self) -> float:
        """Signed distance from the capture point to the support polygon boundary (positive inside)."""
        if self.edges is None or not np.all(np.isfinite(self.capture_point)):
            return -math.inf
        return self.edges.distance(float(self.capture_point[0]), float(self.capture_point[1]))


def load_model(urdf: str | os.PathLike, floating_base: bool) -> tuple[pin.Model, str]:
    """Build a Pinocchio model from a URDF file path or an XML string.

    Returns
    -------
    tuple
        The model and the URDF text (used to read sole sizes from collision boxes).

    Raises
    ------
    WholeBodyError
        If the file is missing or the URDF cannot be parsed.
    """
    text = str(urdf)
    if text.lstrip().startswith('<'):
        xml = text
    else:
        path = Path(text)
        if not path.is_file():
            raise WholeBodyError(f'URDF file not found: {path}')
        xml = path.read_text()
    try:
        ET.fromstring(xml)
        if floating_base:
            model = pin.buildModelFromXML(xml, pin.JointModelFreeFlyer())
        else:
            model = pin.buildModelFromXML(xml)
    except (ET.ParseError, RuntimeError, ValueError) as exc:
        raise WholeBodyError(f'cannot parse URDF: {exc}') from exc
    return model, xml


def sole_size_from_urdf(xml: str, link: str) -> tuple[float, float] | None:
    """(length, width) of the first collision box on ``link`` or, failing that, on its parent link."""
    root = ET.fromstring(xml)

    def box_on(name: str) -> tuple[float, float] | None:
        for element in root.iter('link'):
            if element.get('name') == name:
                for box in element.findall('collision/geometry/box'):
                    size = [float(s) for s in box.get('size', '').split()]
                    if len(size) == 3:
                        return size[0], size[1]
        return None

    size = box_on(link)
    if size is None:
        for joint in root.iter('joint'):
            child, parent = joint.find('child'), joint.find('parent')
            if child is not None and parent is not None and child.get('link') == link:
                size = box_on(parent.get('link', ''))
                break
    return size


class WholeBodyModel:
    """Pinocchio model plus sole configuration; computes `BalanceState` for full states.

    Parameters
    ----------
    urdf
        URDF file path or XML string (``robot_description``).
    floating_base
        Add a free-flyer root joint (legged robots); False for a fixed base.
    sole_frames
        Names of the sole frames (origin at the sole centre, z normal to the sole, pointing up).
    sole_sizes
        One (length, width) per sole frame, metres; None reads each from the collision box of the sole's link (or
        its parent link).
    ground_height
        Height of the flat ground plane, metres.
    contact_height
        A sole whose centre is at most this far above the ground plane counts as in contact, metres.
    polygon_tolerance
        Sole motion below which the cached support polygon is reused, metres (0 recomputes it every tick).

    Raises
    ------
    WholeBodyError
        On an unreadable URDF, an unknown sole frame, a non-positive sole size, or an unsupported joint type.
    """

    def __init__(self, urdf: str | os.PathLike, *, floating_base: bool = True, sole_frames: Sequence[str] = (),
                 sole_sizes: Sequence[tuple[float, float]] | None = None, ground_height: float = 0.0,
                 contact_height: float = 0.01, polygon_tolerance: float = 5e-4) -> None:
        self.model, xml = load_model(urdf, floating_base)
        self.data = self.model.createData()
        self.floating_base = bool(floating_base)
        self.nq_base = 7 if floating_base else 0
        self.nv_base = 6 if floating_base else 0
        self.ground_height = float(ground_height)
        if not contact_height > 0.0:
            raise WholeBodyError(f'contact_height must be positive, got {contact_height}')
        self.contact_height = float(contact_height)
        self.mass = float(sum(inertia.mass for inertia in self.model.inertias))
        self.gravity = float(-self.model.gravity.linear[2])

        first = 2 if floating_base else 1
        names, cos_idx, sin_idx = [], [], []
        for jid in range(first, self.model.njoints):
            joint = self.model.joints[jid]
            if joint.nv != 1:
                raise WholeBodyError(f"joint '{self.model.names[jid]}' has {joint.nv} dofs; only 1-dof joints "
                                     'are supported below the root')
            names.append(self.model.names[jid])
            if joint.nq == 2:  # continuous joint: q stores (cos, sin)
                cos_idx.append(joint.idx_q)
                sin_idx.append(joint.idx_q + 1)
        self.joint_names: tuple[str, ...] = tuple(names)
        self.n_joints = len(names)
        self._unbounded = [i for i in range(self.n_joints) if self.model.joints[first + i].nq == 2]
        self._cos_idx, self._sin_idx = np.array(cos_idx, dtype=np.intp), np.array(sin_idx, dtype=np.intp)
        self._bounded_q = np.array([self.model.joints[first + i].idx_q for i in range(self.n_joints)
                                    if self.model.joints[first + i].nq == 1], dtype=np.intp)
        self._bounded = np.array([i for i in range(self.n_joints) if self.model.joints[first + i].nq == 1],
                                 dtype=np.intp)
        if self.n_joints and self.model.nq != self.nq_base + self.n_joints + len(cos_idx):
            raise WholeBodyError('unexpected configuration layout')
        self._neutral = pin.neutral(self.model)

        frames = list(sole_frames)
        if sole_sizes is not None and len(sole_sizes) != len(frames):
            raise WholeBodyError(f'{len(sole_sizes)} sole sizes given for {len(frames)} sole frames')
        feet = []
        for k, frame in enumerate(frames):
            if not self.model.existFrame(frame):
                raise WholeBodyError(f"sole frame '{frame}' is not in the model")
            size = sole_sizes[k] if sole_sizes is not None else sole_size_from_urdf(xml, frame)
            if size is None:
                raise WholeBodyError(f"no sole size given for '{frame}' and no collision box found on its link")
            length, width = float(size[0]), float(size[1])
            if not (length > 0.0 and width > 0.0 and math.isfinite(length) and math.isfinite(width)):
                raise WholeBodyError(f"sole size of '{frame}' must be positive, got {size}")
            feet.append(Foot(frame, self.model.getFrameId(frame), length, width))
        self.feet: tuple[Foot, ...] = tuple(feet)
        self._fids = [foot.frame_id for foot in feet]
        if not polygon_tolerance >= 0.0:
            raise WholeBodyError(f'polygon_tolerance must be >= 0, got {polygon_tolerance}')
        self.polygon_tolerance = float(polygon_tolerance)
        self._polygon_cache: tuple | None = None
        self._weight = self.mass * self.gravity
        self._com, self._dhg = self.data.com, self.data.dhg  # references into data, refreshed by every call
        self.soles: list = []
        self.contacts: tuple[bool, ...] = ()
        self.edges: EdgeTable | None = None

    # ---------------------------------------------------------------- state assembly
    def joint_map(self) -> JointMap:
        """A `JointMap` onto this model's joint order (for sensor_msgs/JointState names)."""
        return JointMap(self.joint_names)

    def configuration(self, joint_positions: np.ndarray, base_position: np.ndarray | None = None,
                      base_orientation_xyzw: np.ndarray | None = None) -> np.ndarray:
        """Full configuration ``q`` from joint positions (model order) and, for a floating base, the base pose.

        The base defaults to the origin with identity orientation. Orientation is normalised.
        """
        q = self._neutral.copy()
        if len(self._unbounded):
            qj = np.asarray(joint_positions, dtype=np.float64)
            q[self._bounded_q] = qj[self._bounded]
            q[self._cos_idx] = np.cos(qj[self._unbounded])
            q[self._sin_idx] = np.sin(qj[self._unbounded])
        else:
            q[self.nq_base:] = joint_positions
        if self.floating_base:
            if base_position is not None:
                q[:3] = base_position
            if base_orientation_xyzw is not None:
                quat = np.asarray(base_orientation_xyzw, dtype=np.float64)
                norm = float(np.linalg.norm(quat))
                if not norm > 1e-9:
                    raise WholeBodyError('base orientation quaternion has zero norm')
                q[3:7] = quat / norm
        return q

    def joint_positions(self, q: np.ndarray) -> np.ndarray:
        """Joint positions (model order) from a full configuration (inverse of `configuration` for the joints)."""
        if len(self._unbounded):
            out = np.zeros(self.n_joints)
            out[self._bounded] = q[self._bounded_q]
            out[self._unbounded] = np.arctan2(q[self._sin_idx], q[self._cos_idx])
            return out
        return np.array(q[self.nq_base:], dtype=np.float64)

    def velocity(self, joint_velocities: np.ndarray, base_twist_local: np.ndarray | None = None) -> np.ndarray:
        """Full velocity ``v`` (Pinocchio convention: base twist in the base frame, then joint rates)."""
        v = np.zeros(self.model.nv)
        v[self.nv_base:] = joint_velocities
        if self.floating_base and base_twist_local is not None:
            v[:6] = base_twist_local
        return v

    # ---------------------------------------------------------------- balance
    def sole_placements(self) -> list[pin.SE3]:
        """World placements of the sole frames after the last evaluation (or kinematics call)."""
        return [pin.updateFramePlacement(self.model, self.data, fid) for fid in self._fids]

    def support_polygon(self, soles: Sequence[list], contacts: tuple[bool, ...]) -> EdgeTable | None:
        """Convex hull of the rectangles of the soles in contact.

        Parameters
        ----------
        soles
            One 4x4 homogeneous world placement (nested lists) per sole frame.
        contacts
            One flag per sole.

        The polygon is cached and reused while the contact set is unchanged and no sole in contact has moved by more
        than ``polygon_tolerance`` (metres in x, y; the same number as a change of the cosine/sine of its yaw). The
        reused polygon is then off by at most that tolerance (plus ``length/2`` times the yaw change).
        """
        cache = self._polygon_cache
        if cache is not None and cache[0] == contacts:
            tol = self.polygon_tolerance
            for k, x, y, c, s in cache[1]:
                h = soles[k]
                if (abs(h[0][3] - x) > tol or abs(h[1][3] - y) > tol or abs(h[0][0] - c) > tol
                        or abs(h[1][0] - s) > tol):
                    break
            else:
                return cache[2]
        points, key = [], []
        for k, in_contact in enumerate(contacts):
            if not in_contact:
                continue
            h, foot = soles[k], self.feet[k]
            r00, r01, px = h[0][0], h[0][1], h[0][3]
            r10, r11, py = h[1][0], h[1][1], h[1][3]
            for sx, sy in _CORNERS:
                lx, ly = sx * foot.length, sy * foot.width
                points.append((px + r00 * lx + r01 * ly, py + r10 * lx + r11 * ly))
            key.append((k, px, py, r00, r10))
        if not points:
            self._polygon_cache = None
            return None
        array = np.array(points)
        edges = EdgeTable(array[convex_hull_indices(array)])
        self._polygon_cache = (contacts, key, edges)
        return edges

    def tick(self, q: np.ndarray, v: np.ndarray, a: np.ndarray, contacts: tuple[bool, ...] | None = None,
             external: Sequence[float] | None = None) -> tuple[list[float], float, float, float]:
        """The per-control-tick path: CoM, ZMP and balance margin of ``(q, v, a)``, in as few Python steps as possible.

        Parameters
        ----------
        q, v, a
            Full configuration, velocity and acceleration (Pinocchio conventions; floating base first).
        contacts
            One flag per sole; None decides by sole height (``contact_height``).
        external
            Known non-contact external wrench on the robot (a push, a carried load's handle): force (3) and moment
            about the world origin (3), world axes. It is removed so the ZMP is that of the ground contacts only.
            None: every external force is a ground contact.

        Returns
        -------
        tuple
            ``(com [x, y, z], zmp_x, zmp_y, margin)``; the ZMP is NaN and the margin -inf when the vertical contact
            force is not positive; the margin is -inf when no sole is in contact. The ZMP lies on the ground plane.
        """
        model, data = self.model, self.data
        pin.computeCentroidalMomentumTimeVariation(model, data, q, v, a)
        com = self._com[0].tolist()
        dpx, dpy, dpz, dlx, dly, _ = self._dhg.np.tolist()
        if external is not None:
            fx, fy, fz_e, nx, ny, nz = (float(x) for x in external)
            cx, cy, cz = com
            # contact wrench = total non-gravity wrench - known external one (moment taken about the CoM)
            dpx, dpy, dpz = dpx - fx, dpy - fy, dpz - fz_e
            dlx -= nx - (cy * fz_e - cz * fy)
            dly -= ny - (cz * fx - cx * fz_e)
        ufp = pin.updateFramePlacement
        soles = [ufp(model, data, fid).homogeneous.tolist() for fid in self._fids]
        if contacts is None:
            limit = self.ground_height + self.contact_height
            contacts = tuple([h[2][3] <= limit for h in soles])
        self.soles, self.contacts = soles, contacts
        edges = self.edges = self.support_polygon(soles, contacts) if soles else None
        fz = dpz + self._weight  # vertical non-gravity external force
        if fz <= 1e-6 * self._weight:
            return com, math.nan, math.nan, -math.inf
        # moment balance about the CoM (n_G = dL/dt): the ground point where the horizontal moment vanishes
        height = com[2] - self.ground_height
        zx = com[0] - (height * dpx + dly) / fz
        zy = com[1] - (height * dpy - dlx) / fz
        margin = edges.distance(zx, zy) if edges is not None else -math.inf
        return com, zx, zy, margin

    def evaluate(self, q: np.ndarray, v: np.ndarray, a: np.ndarray, contacts: Sequence[bool] | None = None,
                 base_source: str = 'given', external: Sequence[float] | None = None) -> BalanceState:
        """All balance quantities of the state ``(q, v, a)`` (`tick` plus momentum, capture point, polygon).

        Parameters
        ----------
        q, v, a
            Full configuration, velocity and acceleration (Pinocchio conventions; floating base first).
        contacts
            One flag per sole; None decides by sole height (``contact_height``).
        base_source
            Label carried into the result (how the base state was obtained).
        external
            Known non-contact external wrench (see `tick`).

        Returns
        -------
        BalanceState
        """
        com, zx, zy, margin = self.tick(q, v, a, None if contacts is None else tuple(bool(c) for c in contacts),
                                        external)
        hg = self.data.hg.vector.copy()
        h = self.ground_height
        height = com[2] - h
        if height > 1e-6:
            omega = math.sqrt(self.gravity / height)
            capture = np.array([com[0] + hg[0] / (self.mass * omega), com[1] + hg[1] / (self.mass * omega), h])
        else:
            capture = np.array([math.nan, math.nan, h])
        edges = self.edges
        return BalanceState(com=np.array(com), com_velocity=hg[:3] / self.mass, momentum=hg,
                            momentum_rate=self.data.dhg.vector.copy(), zmp=np.array([zx, zy, h]),
                            capture_point=capture,
                            support_polygon=edges.polygon if edges is not None else np.zeros((0, 2)),
                            contacts=self.contacts, margin=margin, base_source=base_source, edges=edges)

    def zmp_from_rnea(self, q: np.ndarray, v: np.ndarray, a: np.ndarray) -> np.ndarray:
        """ZMP from the inverse-dynamics base wrench ``RNEA(q, v, a)[:6]`` (floating base only; a cross-check).

        Raises
        ------
        WholeBodyError
            For a fixed-base model (it has no base wrench in ``tau``).
        """
        if not self.floating_base:
            raise WholeBodyError('zmp_from_rnea needs a floating base')
        tau = pin.rnea(self.model, self.data, q, v, a)
        base = pin.XYZQUATToSE3(q[:7])
        wrench = base.act(pin.Force(tau[:6]))  # base wrench about the world origin, world axes
        f, n = wrench.linear, wrench.angular
        h = self.ground_height
        return np.array([(h * f[0] - n[1]) / f[2], (n[0] + h * f[1]) / f[2], h])
