"""A procedural Shapes3D look-alike: floor, two wall faces and one object.

Factors (as in DeepMind's 3dshapes): floor hue, wall hue, object hue, scale,
shape (cube, cylinder, sphere, capsule) and orientation (camera azimuth in
[-30, 30] degrees: it moves the room corner and the object's lit side).

Rendering is analytic and anti-aliased (pixel coverage from signed distances),
so sub-pixel changes of scale or azimuth still change pixel values: every factor
visibly changes the image and no two factor combinations render alike. Every
pixel is linear in the three colours: image = X * floor_rgb + Y * wall_rgb +
Z * object_rgb, where the weight maps X, Y, Z depend only on (scale, shape,
azimuth). Rendering is therefore one small matrix product per image, which
makes the full 480,000-image grid fast.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

FULL_FACTOR_SIZES = (10, 10, 10, 8, 4, 15)
FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
SHAPE_NAMES = ("cube", "cylinder", "sphere", "capsule")


def factor_values(factor_sizes: Sequence[int]) -> list[np.ndarray]:
    """Label values per factor, on the published scales (hues k/n, scale 0.75..1.25, ...)."""
    floor, wall, obj, scale, shape, orientation = (int(s) for s in factor_sizes)
    if not 1 <= shape <= len(SHAPE_NAMES):
        raise ValueError(f"shape factor size must be 1..{len(SHAPE_NAMES)}, got {shape}")
    if min(factor_sizes) < 1:
        raise ValueError(f"factor sizes must be positive, got {list(factor_sizes)}")
    return [np.arange(floor) / floor, np.arange(wall) / wall, np.arange(obj) / obj,
            np.linspace(0.75, 1.25, scale) if scale > 1 else np.array([1.0]),
            np.arange(shape, dtype=np.float64),
            np.linspace(-30.0, 30.0, orientation) if orientation > 1 else np.array([0.0])]


def hsv_to_rgb(hue: np.ndarray, saturation: float, value: float) -> np.ndarray:
    """(n,) hues in [0, 1) -> (n, 3) RGB."""
    hue = np.asarray(hue, dtype=np.float64)
    channel_offsets = np.array([5.0, 3.0, 1.0])
    k = (channel_offsets[None, :] + hue[:, None] * 6.0) % 6.0
    return value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def pixel_coverage(signed_distance: np.ndarray, size: int) -> np.ndarray:
    """Fraction of a pixel inside a shape whose signed distance (image units) is given."""
    return np.clip(0.5 - signed_distance * size, 0.0, 1.0)


class Shapes3DRenderer:
    factor_names = FACTOR_NAMES

    def __init__(self, size: int = 64, factor_sizes: Sequence[int] = FULL_FACTOR_SIZES):
        self.size = int(size)
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        if len(self.factor_sizes) != 6:
            raise ValueError(f"Shapes3D has 6 factors, got {list(factor_sizes)}")
        self.values = factor_values(self.factor_sizes)
        centers = (np.arange(self.size) + 0.5) / self.size
        self.v, self.u = np.meshgrid(centers, centers, indexing="ij")  # rows (down), columns
        self.floor_rgb = hsv_to_rgb(self.values[0], 0.75, 0.9)
        self.wall_rgb = hsv_to_rgb(self.values[1], 0.6, 0.85)
        self.object_rgb = hsv_to_rgb(self.values[2], 0.85, 1.0)
        azimuths = np.deg2rad(self.values[5])
        rooms = [self._room(a) for a in azimuths]
        weights = []
        for scale in self.values[3]:
            for shape in range(self.factor_sizes[4]):
                for azimuth, (floor, room_shade) in zip(azimuths, rooms):
                    alpha, object_shade = self._object(scale, shape, azimuth)
                    behind = room_shade * (1.0 - alpha)
                    weights.append(np.stack([behind * floor, behind * (1.0 - floor),
                                             alpha * object_shade], axis=-1))
        # (scale * shape * azimuth, pixels, 3 colour weights), in mixed-radix order.
        self.weights = np.array(weights, dtype=np.float32).reshape(len(weights), -1, 3)
        self.inner_sizes = self.factor_sizes[3:]

    def _room(self, azimuth: float):
        """Floor coverage and per-pixel brightness of the room seen from ``azimuth``."""
        u, v, size = self.u, self.v, self.size
        swing = np.sin(azimuth)
        corner_u, corner_v = 0.5 + 0.5 * swing, 0.5
        slope_left, slope_right = 0.3 + 0.2 * swing, 0.3 - 0.2 * swing
        left = u < corner_u
        slope = np.where(left, slope_left, slope_right)
        horizon = corner_v + slope * np.abs(u - corner_u)
        floor = pixel_coverage((horizon - v) / np.sqrt(1.0 + slope ** 2), size)
        right_face = pixel_coverage(corner_u - u, size)
        wall_shade = 0.72 + 0.28 * right_face
        floor_shade = 0.6 + 0.4 * v  # nearer floor is brighter
        return floor, floor * floor_shade + (1.0 - floor) * wall_shade

    def _object(self, scale: float, shape: int, azimuth: float):
        """Coverage and shading of the object (centred on the floor) from ``azimuth``."""
        u, v = self.u - 0.5, self.v
        half = 0.12 * scale
        base = 0.84
        # Light fixed in the world: as the camera orbits, the lit side moves.
        light = np.array([np.sin(0.7 - azimuth), -0.55, np.cos(0.7 - azimuth)])
        light /= np.linalg.norm(light)
        if SHAPE_NAMES[shape] == "cube":
            yaw = azimuth + np.pi / 4
            c, s = np.cos(yaw), np.sin(yaw)
            extent = half * (c + s)  # half-width of the rotated cube's silhouette
            edge = half * (c - s)    # the vertical edge nearest the camera
            centre_v = base - half
            distance = np.maximum(np.abs(u) - extent, np.abs(v - centre_v) - half)
            left_face = pixel_coverage(u - edge, self.size)
            shade = left_face * (0.55 + 0.3 * c) + (1.0 - left_face) * (0.55 + 0.45 * s)
            shade = shade + 0.1 * (1.0 - (v - (base - 2 * half)) / (2 * half))  # top is lighter
        elif SHAPE_NAMES[shape] == "cylinder":
            height = 2.3 * half
            distance = np.maximum(np.abs(u) - half, np.abs(v - (base - height / 2)) - height / 2)
            shade = self._lambert(u / half, np.zeros_like(u), light)
        elif SHAPE_NAMES[shape] == "sphere":
            radius = 1.1 * half
            centre_v = base - radius
            distance = np.hypot(u, v - centre_v) - radius
            shade = self._lambert(u / radius, (v - centre_v) / radius, light)
        else:  # capsule: a vertical stadium
            radius = 0.7 * half
            top, bottom = base - 2.8 * half + radius, base - radius
            nearest_v = np.clip(v, top, bottom)
            distance = np.hypot(u, v - nearest_v) - radius
            shade = self._lambert(u / radius, (v - nearest_v) / radius, light)
        return pixel_coverage(distance, self.size), np.clip(shade, 0.0, 1.2)

    @staticmethod
    def _lambert(nx: np.ndarray, ny: np.ndarray, light: np.ndarray) -> np.ndarray:
        nx, ny = np.clip(nx, -1, 1), np.clip(ny, -1, 1)
        nz = np.sqrt(np.clip(1.0 - nx ** 2 - ny ** 2, 0.0, 1.0))
        return 0.35 + 0.75 * np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0.0, 1.0)

    def _colours(self, factors: np.ndarray) -> np.ndarray:
        """(n, 3 weights, 3 channels): floor, wall and object colour of each image."""
        return np.stack([self.floor_rgb[factors[:, 0]], self.wall_rgb[factors[:, 1]],
                         self.object_rgb[factors[:, 2]]], axis=1).astype(np.float32)

    def _to_uint8(self, linear: np.ndarray, count: int) -> np.ndarray:
        np.clip(linear, 0.0, 1.0, out=linear)
        linear *= 255.0
        linear += 0.5
        return linear.astype(np.uint8).reshape(count, self.size, self.size, 3)

    def render(self, factors: np.ndarray) -> np.ndarray:
        """uint8 (n, size, size, 3) images of factor classes (n, 6)."""
        factors = np.asarray(factors, dtype=np.int64).reshape(-1, 6)
        inner = np.ravel_multi_index(tuple(factors[:, 3:].T), self.inner_sizes)
        linear = np.matmul(self.weights[inner], self._colours(factors))
        return self._to_uint8(linear, len(factors))

    def render_block(self, floor: int, wall: int, obj: int) -> np.ndarray:
        """All images with these three hues, in row order (scale, shape, orientation fastest)."""
        colours = self._colours(np.array([[floor, wall, obj]]))[0]
        linear = self.weights.reshape(-1, 3) @ colours
        return self._to_uint8(linear, self.weights.shape[0])

    def labels(self, factors: np.ndarray) -> np.ndarray:
        """Factor values (n, 6) float64 of factor classes, as stored in 3dshapes.h5."""
        factors = np.asarray(factors, dtype=np.int64)
        return np.stack([self.values[i][factors[:, i]] for i in range(6)], axis=1)
