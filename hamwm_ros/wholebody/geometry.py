"""Planar geometry for support polygons: convex hull, signed distance (vectorised and per tick).

Everything works on ground-plane ``(x, y)`` coordinates. Polygons are ``(m, 2)`` arrays of vertices in
counter-clockwise order; a support polygon may degenerate to a segment or a point (a foot on an edge), and the
signed distance stays well defined for those (never positive: nothing is strictly inside a segment).
"""

from __future__ import annotations

import math

import numpy as np


def convex_hull_indices(points: np.ndarray, tol: float = 1e-12) -> list[int]:
    """Indices of the convex hull of ``points`` in counter-clockwise order (Andrew's monotone chain).

    Collinear points on an edge are dropped. Fewer than three distinct points give a segment (two indices) or a
    point (one index).

    Raises
    ------
    ValueError
        If ``points`` is not a non-empty (k, 2) array of finite numbers.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
        raise ValueError(f'points must be a non-empty (k, 2) array, got shape {pts.shape}')
    if not np.all(np.isfinite(pts)):
        raise ValueError('points are not finite')
    order = np.lexsort((pts[:, 1], pts[:, 0])).tolist()
    xy = pts.tolist()

    def cross(o: int, a: int, b: int) -> float:
        return (xy[a][0] - xy[o][0]) * (xy[b][1] - xy[o][1]) - (xy[a][1] - xy[o][1]) * (xy[b][0] - xy[o][0])

    lower: list[int] = []
    for i in order:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], i) <= tol:
            lower.pop()
        lower.append(i)
    upper: list[int] = []
    for i in reversed(order):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], i) <= tol:
            upper.pop()
        upper.append(i)
    hull = lower[:-1] + upper[:-1]
    if not hull:  # every point identical
        return [order[0]]
    if len(hull) == 2 and xy[hull[0]] == xy[hull[1]]:
        return hull[:1]
    return hull


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull vertices of ``points``, counter-clockwise, as an (m, 2) array (see `convex_hull_indices`)."""
    pts = np.asarray(points, dtype=np.float64)
    return pts[convex_hull_indices(pts)]


def signed_distance(polygon: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Signed distance from ``points`` to the boundary of a convex ``polygon``: positive inside, negative outside.

    Parameters
    ----------
    polygon
        (m, 2) vertices, counter-clockwise (as returned by `convex_hull`); m = 1 or 2 is a point or segment.
    points
        (..., 2) query points.

    Returns
    -------
    numpy.ndarray
        (...) distances in the polygon's units.

    Raises
    ------
    ValueError
        If the polygon is empty.
    """
    poly = np.asarray(polygon, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64)
    if poly.ndim != 2 or poly.shape[0] == 0:
        raise ValueError('support polygon is empty')
    x, y = pts[..., 0], pts[..., 1]
    vertices = poly.tolist()
    if len(vertices) == 2 and vertices[0] == vertices[1]:
        vertices = vertices[:1]
    if len(vertices) == 1:
        return -np.hypot(x - vertices[0][0], y - vertices[0][1])
    # loop over the few edges, vectorised over the (many) points
    pairs = list(zip(vertices, vertices[1:] + vertices[:1]))[:1 if len(vertices) == 2 else None]
    nearest_sq = np.full(x.shape, np.inf)
    inside = np.full(x.shape, len(vertices) >= 3)
    for (ax, ay), (bx, by) in pairs:
        dx, dy = bx - ax, by - ay
        length_sq = dx * dx + dy * dy
        px, py = x - ax, y - ay
        if length_sq > 0.0:
            t = np.clip((px * dx + py * dy) / length_sq, 0.0, 1.0)
            ex, ey = px - t * dx, py - t * dy
        else:
            ex, ey = px, py
        np.minimum(nearest_sq, ex * ex + ey * ey, out=nearest_sq)
        inside &= dx * py - dy * px >= 0.0
    distance = np.sqrt(nearest_sq)
    return np.where(inside, distance, -distance)


class EdgeTable:
    """A convex polygon prepared for fast scalar signed-distance queries (one per control tick).

    Inside a convex polygon the distance to the boundary is the smallest distance to an edge line; outside, the
    exact value needs the point-to-segment distances, computed only in that (rarer) case.
    """

    __slots__ = ('polygon', 'edges', '_segments')

    def __init__(self, polygon: np.ndarray) -> None:
        self.polygon = np.asarray(polygon, dtype=np.float64)
        vertices = self.polygon.tolist()
        following = vertices[1:] + vertices[:1]
        edges, segments = [], []
        for (ax, ay), (bx, by) in zip(vertices, following):
            dx, dy = bx - ax, by - ay
            length_sq = dx * dx + dy * dy
            segments.append((ax, ay, dx, dy, 1.0 / length_sq if length_sq > 0.0 else 0.0))
            if len(vertices) >= 3 and length_sq > 1e-24:  # inward unit normal of a counter-clockwise edge
                length = math.sqrt(length_sq)
                nx, ny = -dy / length, dx / length
                edges.append((nx, ny, nx * ax + ny * ay))
        self.edges: tuple[tuple[float, float, float], ...] = tuple(edges)  # (nx, ny, c): inward normal, offset
        self._segments = segments[:1] if len(vertices) <= 2 else segments

    def distance(self, x: float, y: float) -> float:
        """Signed distance of the point (x, y): positive inside."""
        edges = self.edges
        if edges:
            inside = math.inf
            for nx, ny, c in edges:  # a plain loop: cheaper than min() over a list for a handful of edges
                d = nx * x + ny * y - c
                if d < inside:
                    inside = d
            if inside >= 0.0:
                return inside
        best = math.inf
        for ax, ay, dx, dy, inv in self._segments:
            t = ((x - ax) * dx + (y - ay) * dy) * inv
            t = 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)
            ex, ey = x - ax - t * dx, y - ay - t * dy
            best = min(best, ex * ex + ey * ey)
        return -math.sqrt(best)
