"""A procedural MPI3D look-alike: a robot arm hanging from a ceiling mount holds one object.

Factors (as in MPI3D, names from datasets/mpi3d.py): object colour (MPI3D's white, green,
red, blue, brown, olive), object shape (cube, sphere, cone, cylinder, hexagonal prism,
pyramid: flat silhouettes with face shading), object size, camera height (the floor band's
horizon moves), background colour (purple, sea green, salmon, ...), and the arm's two joint
angles: horizontal_axis swings the arm left-right, vertical_axis tilts it towards the camera,
which lengthens its projection and lowers the object.

This world differs from the Shapes3D look-alike on purpose (other factor counts, fixed RGB
palettes instead of HSV hues, flat silhouettes, and two position factors), so a recipe tuned
on one can be checked on the other. Rendering is analytic and anti-aliased (pixel coverage
from signed distances), so sub-pixel moves still change pixel values. Every pixel is linear
in the two colours plus a neutral term: image = X * background_rgb + Y * object_rgb + Z,
where the weight maps X, Y, Z depend only on (shape, size, camera height, the two angles).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..mpi3d import FACTOR_NAMES, FACTOR_SIZES as FULL_FACTOR_SIZES
from .shapes3d_renderer import pixel_coverage

SHAPE_NAMES = ("cube", "sphere", "cone", "cylinder", "hexagon", "pyramid")
OBJECT_RGB = np.array([[0.92, 0.92, 0.88], [0.15, 0.62, 0.22], [0.80, 0.12, 0.10],
                       [0.14, 0.28, 0.82], [0.48, 0.28, 0.12], [0.52, 0.52, 0.12]])
BACKGROUND_RGB = np.array([[0.45, 0.30, 0.58], [0.22, 0.56, 0.48], [0.92, 0.56, 0.46],
                           [0.55, 0.70, 0.86], [0.80, 0.74, 0.52], [0.40, 0.42, 0.46]])
PIVOT = (0.5, 0.06)       # where the arm leaves its mount (u right, v down, image units)
ARM_RADIUS = 0.028
# Light from the upper left, towards the scene (x right, y down, z out of the image).
LIGHT = np.array([-0.5, -0.6, 0.62]) / np.linalg.norm([-0.5, -0.6, 0.62])


def _spread(count: int, low: float, high: float) -> np.ndarray:
    return np.linspace(low, high, count) if count > 1 else np.array([(low + high) / 2])


def factor_values(factor_sizes: Sequence[int]) -> list[np.ndarray]:
    """Per factor, what its classes mean: palette indices, shape indices, object half-size,
    horizon height, and the two joint angles (radians) / the arm's projected length."""
    sizes = [int(s) for s in factor_sizes]
    if len(sizes) != len(FACTOR_NAMES) or min(sizes) < 1:
        raise ValueError(f"MPI3D has {len(FACTOR_NAMES)} positive factor sizes, got {list(factor_sizes)}")
    limits = {0: len(OBJECT_RGB), 1: len(SHAPE_NAMES), 4: len(BACKGROUND_RGB)}
    for factor, limit in limits.items():
        if sizes[factor] > limit:
            raise ValueError(f"{FACTOR_NAMES[factor]} factor size must be 1..{limit}, got {sizes[factor]}")
    colour, shape, size, camera, background, horizontal, vertical = sizes
    return [np.arange(colour), np.arange(shape), _spread(size, 0.075, 0.115),
            _spread(camera, 0.80, 0.58), np.arange(background),
            np.deg2rad(_spread(horizontal, -28.0, 28.0)), _spread(vertical, 0.34, 0.64)]


def _polygon_distance(x: np.ndarray, y: np.ndarray, corners: Sequence[tuple[float, float]]):
    """Signed distance (exact inside and along edges) to a convex polygon, corners clockwise
    on screen (y down), in units of the object's half-size."""
    distance = None
    for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1]):
        nx, ny = y1 - y0, x0 - x1  # outward normal of a clockwise (y-down) edge
        norm = np.hypot(nx, ny)
        edge = ((x - x0) * nx + (y - y0) * ny) / norm
        distance = edge if distance is None else np.maximum(distance, edge)
    return distance


def _hexagon_corners() -> list[tuple[float, float]]:
    angles = np.deg2rad(np.arange(6) * 60.0)  # flat top and bottom
    return [(1.15 * np.cos(a), 1.15 * np.sin(a)) for a in angles]


def object_silhouette(shape: int, x: np.ndarray, y: np.ndarray, pixels: np.ndarray):
    """(signed distance, shade) of a shape at the origin; x, y in units of its half-size,
    ``pixels`` pixels per unit (face edges are anti-aliased too)."""
    name = SHAPE_NAMES[shape]

    def side(distance):  # 1 where ``distance`` < 0, blended across one pixel
        return np.clip(0.5 - distance * pixels, 0.0, 1.0)

    if name == "sphere":
        radius = 1.1
        distance = np.hypot(x, y) - radius
        nx, ny = np.clip(x / radius, -1, 1), np.clip(y / radius, -1, 1)
        nz = np.sqrt(np.clip(1.0 - nx ** 2 - ny ** 2, 0.0, 1.0))
        return distance, 0.35 + 0.75 * np.clip(nx * LIGHT[0] + ny * LIGHT[1] + nz * LIGHT[2], 0, 1)
    if name == "cube":  # front face with a lit top face above y = -0.4
        distance = np.maximum(np.abs(x), np.abs(y)) - 1.0
        return distance, 0.78 + 0.3 * side(y + 0.4) - 0.1 * side(0.35 - x)
    if name == "cone":
        distance = _polygon_distance(x, y, [(0.0, -1.35), (1.1, 1.1), (-1.1, 1.1)])
        return distance, 1.0 - 0.3 * np.clip((x + 1.1) / 2.2, 0, 1)
    if name == "cylinder":  # lying on its side: wider than tall, shaded across its axis
        distance = np.maximum(np.abs(x) - 1.35, np.abs(y) - 0.72)
        return distance, 1.05 - 0.45 * np.clip((y + 0.4) / 1.1, 0, 1) ** 2
    if name == "hexagon":
        distance = _polygon_distance(x, y, _hexagon_corners())
        return distance, 0.9 - 0.12 * (x + y)
    # pyramid: wide and low, a lit left face and a shaded right face
    distance = _polygon_distance(x, y, [(0.0, -0.95), (1.5, 0.9), (-1.5, 0.9)])
    return distance, 0.68 + 0.32 * side(x)


class MPI3DRenderer:
    factor_names = FACTOR_NAMES

    def __init__(self, size: int = 64, factor_sizes: Sequence[int] = FULL_FACTOR_SIZES):
        self.size = int(size)
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        self.values = factor_values(self.factor_sizes)
        centers = (np.arange(self.size) + 0.5) / self.size
        v, u = np.meshgrid(centers, centers, indexing="ij")  # rows (down), columns
        self.u, self.v = u.reshape(1, -1), v.reshape(1, -1)  # (1, pixels): broadcast over images
        self.object_rgb = OBJECT_RGB[: self.factor_sizes[0]]
        self.background_rgb = BACKGROUND_RGB[: self.factor_sizes[4]]
        self._mount = pixel_coverage(np.maximum(np.abs(self.u - 0.5) - 0.09, self.v - PIVOT[1] - 0.02),
                                self.size)

    def weights(self, shape: int, size: np.ndarray, camera: np.ndarray, horizontal: np.ndarray,
                vertical: np.ndarray) -> np.ndarray:
        """(n, pixels, 3) float32 weights of (background, object, white) for n images of one
        shape; the other arguments are (n,) factor classes."""
        classes = [np.asarray(c, dtype=np.int64) for c in (size, camera, horizontal, vertical)]
        # In chunks: the float64 temporaries of a whole 64x64 block would take a gigabyte.
        chunks = [self._weights(shape, *(c[start:start + 256] for c in classes))
                  for start in range(0, len(classes[0]), 256)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.u.size, 3), np.float32)

    def _weights(self, shape, size, camera, horizontal, vertical):
        half = self.values[2][size][:, None]
        horizon = self.values[3][camera][:, None]
        angle = self.values[5][horizontal][:, None]
        length = self.values[6][vertical][:, None]
        centre_u, centre_v = PIVOT[0] + length * np.sin(angle), PIVOT[1] + length * np.cos(angle)
        background, white = self._scene(horizon)
        alpha = self._mount
        background, white = background * (1 - alpha), white * (1 - alpha) + 0.3 * alpha
        alpha, shade = self._arm(centre_u, centre_v)
        background, white = background * (1 - alpha), white * (1 - alpha) + alpha * shade
        distance, shade = object_silhouette(shape, (self.u - centre_u) / half, (self.v - centre_v) / half,
                                             half * self.size)
        alpha = pixel_coverage(distance * half, self.size)
        obj = alpha * np.clip(shade, 0.0, 1.2)
        background, white = background * (1 - alpha), white * (1 - alpha)
        return np.stack([background, obj, white], axis=-1).astype(np.float32)

    def _scene(self, horizon: np.ndarray):
        """Background and neutral weights of the wall (above the horizon) and the floor band."""
        floor = pixel_coverage(horizon - self.v, self.size)
        wall_shade = 1.0 - 0.2 * self.v
        floor_shade = 0.45 + 0.5 * np.clip(self.v - horizon, 0.0, 1.0)  # nearer floor is lighter
        return (1 - floor) * wall_shade + floor * 0.5 * floor_shade, floor * 0.28

    def _arm(self, centre_u: np.ndarray, centre_v: np.ndarray):
        """Coverage and grey shade of the arm: a thick segment from the pivot to the object."""
        du, dv = centre_u - PIVOT[0], centre_v - PIVOT[1]
        along = np.clip(((self.u - PIVOT[0]) * du + (self.v - PIVOT[1]) * dv) / (du ** 2 + dv ** 2), 0, 1)
        across_u, across_v = self.u - PIVOT[0] - along * du, self.v - PIVOT[1] - along * dv
        distance = np.hypot(across_u, across_v)
        # Lit from the left: the side of the arm facing -u is brighter (a tube, shaded across).
        side = np.clip(across_u / ARM_RADIUS, -1, 1)
        return pixel_coverage(distance - ARM_RADIUS, self.size), 0.62 - 0.22 * side

    def _colours(self, obj: int, background: int) -> np.ndarray:
        rows = [self.background_rgb[background], self.object_rgb[obj], np.ones(3)]
        return np.stack(rows).astype(np.float32)

    def _to_uint8(self, linear: np.ndarray) -> np.ndarray:
        images = (np.clip(linear, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return images.reshape(linear.shape[0], self.size, self.size, 3)

    def render(self, factors: np.ndarray) -> np.ndarray:
        """uint8 (n, size, size, 3) images of factor classes (n, 7)."""
        factors = np.asarray(factors, dtype=np.int64).reshape(-1, len(FACTOR_NAMES))
        images = np.empty((len(factors), self.size, self.size, 3), dtype=np.uint8)
        for shape in np.unique(factors[:, 1]):
            rows = np.flatnonzero(factors[:, 1] == shape)
            f = factors[rows]
            weights = self.weights(int(shape), f[:, 2], f[:, 3], f[:, 5], f[:, 6])
            colours = np.stack([self._colours(o, b) for o, b in zip(f[:, 0], f[:, 4])])
            images[rows] = self._to_uint8(np.matmul(weights, colours))
        return images

    def render_block(self, obj: int, shape: int, size: int, camera: int) -> np.ndarray:
        """All images with these four leading factors, in row order (background colour, then the
        two axes, the vertical axis fastest)."""
        horizontal, vertical = np.indices(self.factor_sizes[5:]).reshape(2, -1)
        count = len(horizontal)
        weights = self.weights(shape, np.full(count, size), np.full(count, camera), horizontal, vertical)
        return np.concatenate([self._to_uint8(weights @ self._colours(obj, background))
                               for background in range(self.factor_sizes[4])])
