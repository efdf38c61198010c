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
_ccm = pin.computeCentroidalMomentumTimeVariation
_ufp = pin.updateFramePlacement


def _placement_array(placement: pin.SE3) -> np.ndarray:
    """(12,) rotation (column-major) then translation of ``placement``.

    A read-only view of the SE3's own memory where Pinocchio lays it out so (an Eigen 3x3 followed by a 3-vector),
    otherwise a copy.
    """
    rotation, translation = placement.rotation, placement.translation
    start = rotation.__array_interface__['data'][0]
    if (rotation.strides == (8, 24) and translation.strides == (8,)
            and translation.__array_interface__['data'][0] == start + 72):
        return np.lib.stride_tricks.as_strided(rotation, shape=(12,), strides=(8,), writeable=False)
    return np.concatenate([rotation.ravel(order='F'), translation])


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
        A sole corner at most this far above the ground plane touches it, metres. A sole is in contact when a
        corner touches; the support polygon is the hull of the touching corners (a sole rolled onto its toe
        adds its toe edge only).
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
        if not polygon_tolerance >= 0.0:
            raise WholeBodyError(f'polygon_tolerance must be >= 0, got {polygon_tolerance}')
        self.polygon_tolerance = float(polygon_tolerance)
        self._polygon_cache: tuple | None = None
        self.feet = tuple(feet)
        self._fids = [foot.frame_id for foot in feet]
        self._weight = self.mass * self.gravity
        self.soles: list[list[float]] = []
        self.contacts: tuple[bool, ...] = ()
        self.edges: EdgeTable | None = None
        self._use_views(True)

    @property
    def feet(self) -> tuple[Foot, ...]:
        """The soles; assigning new ones (other sizes, same frames) drops the cached support polygon."""
        return self._feet

    @feet.setter
    def feet(self, feet: Sequence[Foot]) -> None:
        self._feet: tuple[Foot, ...] = tuple(feet)
        self._half_soles = [(0.5 * foot.length, 0.5 * foot.width) for foot in self._feet]
        self._all_soles = (True,) * len(self._feet)
        self._polygon_cache = None

    def _touching_corners(self, soles: list[list[float]], limit: float) -> tuple[tuple[bool, ...], tuple | None]:
        """Contact flags and, when a sole is rolled onto an edge or corner, which corners of each sole touch.

        Returns
        -------
        tuple
            ``(contacts, corners)``: ``corners`` None when every sole in contact is flat (all its corners touch),
            else one entry per sole, None for a flat sole or one off the ground, else a flag per corner.
        """
        flags, touching, rolled = [], [], False
        for (half_length, half_width), h in zip(self._half_soles, soles):
            hx, hy, z = half_length * h[2], half_width * h[5], h[11]
            corners = tuple(z + 2.0 * (sx * hx + sy * hy) <= limit for sx, sy in _CORNERS)
            touches = any(corners)
            partial = touches and not all(corners)
            flags.append(touches)
            touching.append(corners if partial else None)
            rolled = rolled or partial
        return tuple(flags), (tuple(touching) if rolled else None)

    # ---------------------------------------------------------------- views into data
    def _views_now(self) -> tuple:
        """Arrays over what the tick reads from ``self.data``: CoM (3), momentum rate (6), per sole 12 numbers."""
        data = self.data
        return data.com[0], data.dhg.np, tuple(_placement_array(data.oMf[fid]) for fid in self._fids)

    def _use_views(self, live: bool) -> None:
        """Let the tick read through arrays made once (``live``, when `_live_views` finds them live) or not."""
        self._views = self._live_views() if live else None
        self._hot = (self.model, self.data, tuple(self._fids), self._views, self._weight)  # what tick reads first

    def _live_views(self) -> tuple | None:
        """`_views_now` if its arrays stay views of ``self.data`` (Pinocchio writes the next results into them).

        The tick then reads its inputs from arrays made once instead of wrapping Pinocchio objects every call. This
        is checked, not assumed: two different states are computed and the arrays must follow the values Pinocchio
        returns. None if they do not (a Pinocchio version whose accessors return copies); the tick then makes the
        arrays after its calls. The views belong to ``self.data``: whoever replaces it must call `_use_views` again.
        """
        model, data = self.model, self.data
        com, dhg, soles = views = self._views_now()
        rng = np.random.default_rng(0)
        seen = []
        for _ in range(2):
            q = pin.randomConfiguration(model, -np.ones(model.nq), np.ones(model.nq))
            returned = [_ccm(model, data, q, rng.normal(size=model.nv), rng.normal(size=model.nv)).vector.copy()]
            returned.insert(0, pin.centerOfMass(model, model.createData(), q))
            for fid in self._fids:
                h = _ufp(model, data, fid).homogeneous
                returned.append(np.concatenate([h[:3, :3].ravel(order='F'), h[:3, 3]]))
            expected = np.concatenate(returned)
            if not np.allclose(np.concatenate([com, dhg, *soles]), expected, rtol=0.0, atol=1e-12):
                return None
            seen.append(expected)
        return views if not np.array_equal(seen[0], seen[1]) else None

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

    def support_polygon(self, contacts: Sequence[bool],
                        placements: Sequence[pin.SE3] | None = None) -> EdgeTable | None:
        """Convex hull of the rectangles of the soles in contact (computed afresh, not cached).

        Parameters
        ----------
        contacts
            One flag per sole.
        placements
            World placement of each sole frame; None takes them from ``self.data`` (the last evaluation).

        Returns
        -------
        EdgeTable or None
            None when no sole is in contact.
        """
        if placements is None:
            placements = [self.data.oMf[fid] for fid in self._fids]
        return self._hull([_placement_array(p).tolist() for p in placements], contacts)

    def _hull(self, soles: list[list[float]], contacts: Sequence[bool],
              corners: Sequence[tuple[bool, ...] | None] | None = None) -> EdgeTable | None:
        """Support polygon from sole placements as 12 numbers each (rotation column-major, then translation).

        ``corners`` gives, per sole, which of its rectangle's corners touch the ground (None: all of them). A sole
        rolled onto an edge or a toe contributes only that edge or corner, so the polygon may be a segment or a
        point (`EdgeTable` measures distances to those too).
        """
        points = []
        for k, in_contact in enumerate(contacts):
            if not in_contact:
                continue
            foot = self.feet[k]
            touching = None if corners is None else corners[k]
            r00, r10, _, r01, r11, _, _, _, _, px, py, _ = soles[k]
            for c, (sx, sy) in enumerate(_CORNERS):
                if touching is not None and not touching[c]:
                    continue
                lx, ly = sx * foot.length, sy * foot.width
                points.append((px + r00 * lx + r01 * ly, py + r10 * lx + r11 * ly))
        if not points:
            return None
        array = np.array(points)
        return EdgeTable(array[convex_hull_indices(array)])

    def tick(self, q: np.ndarray, v: np.ndarray, a: np.ndarray, contacts: tuple[bool, ...] | None = None,
             external: Sequence[float] | None = None) -> tuple[list[float], float, float, float]:
        """The per-control-tick path: CoM, ZMP and balance margin of ``(q, v, a)``, in as few Python steps as possible.

        Parameters
        ----------
        q, v, a
            Full configuration, velocity and acceleration (Pinocchio conventions; floating base first).
        contacts
            One flag per sole (a sole in contact adds its whole rectangle); None decides by the soles' corner
            heights (``contact_height``, see Notes).
        external
            Known non-contact external wrench on the robot (a push, a carried load's handle): force (3) and moment
            about the world origin (3), world axes. It is removed so the ZMP is that of the ground contacts only.
            None: every external force is a ground contact.

        Returns
        -------
        tuple
            ``(com [x, y, z], zmp_x, zmp_y, margin)``; the ZMP is NaN and the margin -inf when the vertical contact
            force is not positive; the margin is -inf when no sole is in contact. The ZMP lies on the ground plane.
            Afterwards ``soles`` holds each sole's world placement as 12 numbers (rotation column-major, then
            translation), ``contacts`` the flags and ``edges`` the support polygon.

        Notes
        -----
        With ``contacts`` None a sole is in contact when its lowest corner is within ``contact_height`` of the
        ground, and a sole rolled onto an edge or toe (some corners touching, some not) adds only its touching
        corners: the polygon may then be a segment or a point. The support polygon is reused while the contact set
        is unchanged, every sole in contact is flat on the ground (all its corners touching) and none has moved by
        more than ``polygon_tolerance`` (metres in x and y; the same number as a change of the cosine/sine of its
        yaw); the reused polygon is then off by at most that tolerance (plus ``length/2`` times the yaw change).
        Setting ``_polygon_cache`` to None forces a recomputation (assigning ``feet`` does).
        """
        model, data, fids, views, weight = self._hot
        _ccm(model, data, q, v, a)
        for fid in fids:
            _ufp(model, data, fid)
        com_view, dhg_view, sole_views = views or self._views_now()
        com = com_view.tolist()
        dpx, dpy, dpz, dlx, dly, _ = dhg_view.tolist()
        if external is not None:
            fx, fy, fz_e, nx, ny, nz = np.asarray(external, dtype=np.float64).tolist()
            cx, cy, cz = com
            # contact wrench = total non-gravity wrench - known external one (moment taken about the CoM)
            dpx, dpy, dpz = dpx - fx, dpy - fy, dpz - fz_e
            dlx -= nx - (cy * fz_e - cz * fy)
            dly -= ny - (cz * fx - cx * fz_e)
        # plain loops, not comprehensions: in CPython 3.11 each comprehension is a function call (~0.2 us here)
        soles: list[list[float]] = []
        corners: tuple | None = None
        if contacts is None:
            # a sole touches where its lowest corner does; rolled onto an edge or toe, only those corners support
            limit = self.ground_height + self.contact_height
            flat, rolled = True, False
            for (half_length, half_width), view in zip(self._half_soles, sole_views):
                h = view.tolist()
                soles.append(h)
                hx, hy = half_length * h[2], half_width * h[5]  # corner heights differ from the centre's by +-hx +-hy
                spread = (hx if hx > 0.0 else -hx) + (hy if hy > 0.0 else -hy)
                if h[11] + spread > limit:          # not every corner touches
                    flat = False
                    if h[11] - spread <= limit:     # but some do: rolled onto an edge or a corner
                        rolled = True
            if flat:                                # the common case: every sole flat on the ground
                contacts = self._all_soles
            elif rolled:
                contacts, corners = self._touching_corners(soles, limit)
            else:                                   # each sole either flat on the ground or clear of it
                contacts = tuple([h[11] <= limit for h in soles])
        else:
            for view in sole_views:
                soles.append(view.tolist())
        self.soles, self.contacts = soles, contacts
        # the support polygon: the cached one while the soles in contact stay put (see Notes)
        edges, cache = None, self._polygon_cache
        if cache is not None and cache[0] == contacts and corners is None:
            edges = cache[2]
            for k, x0, x1, y0, y1, c0, c1, s0, s1 in cache[1]:  # bounds: cached value -+ polygon_tolerance
                h = soles[k]
                if not (x0 <= h[9] <= x1 and y0 <= h[10] <= y1 and c0 <= h[0] <= c1 and s0 <= h[1] <= s1):
                    edges = None
                    break
        if edges is None:
            edges = self._hull(soles, contacts, corners)
            tol = self.polygon_tolerance
            bounds = [(k, h[9] - tol, h[9] + tol, h[10] - tol, h[10] + tol, h[0] - tol, h[0] + tol, h[1] - tol,
                       h[1] + tol) for k, h in enumerate(soles) if contacts[k]]
            # a rolled sole's support moves with its pitch, which the bounds do not track: not cached
            self._polygon_cache = None if edges is None or corners is not None else (contacts, bounds, edges)
        self.edges = edges
        fz = dpz + weight  # vertical non-gravity external force
        if fz <= 1e-6 * weight:
            return com, math.nan, math.nan, -math.inf
        # moment balance about the CoM (n_G = dL/dt): the ground point where the horizontal moment vanishes
        height = com[2] - self.ground_height
        zx = com[0] - (height * dpx + dly) / fz
        zy = com[1] - (height * dpy - dlx) / fz
        if edges is None:
            return com, zx, zy, -math.inf
        # EdgeTable.distance inlined for the common case, ZMP inside the polygon: the smallest edge-line distance
        margin = math.inf
        for nx, ny, c in edges.edges:
            d = nx * zx + ny * zy - c
            if d < margin:
                margin = d
        if not 0.0 <= margin < math.inf:  # outside, on a segment or point polygon (no edge lines), or NaN
            margin = edges.distance(zx, zy)
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
