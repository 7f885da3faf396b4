"""CLEVR-like multi-object scenes with exact instance masks.

3-6 objects (sphere, cube, cylinder, cone) in 8 CLEVR colours and two sizes,
placed on a grey backdrop and drawn far-to-near, so nearer objects occlude
farther ones. Placement is resampled until every object keeps a visible part,
so each instance mask is non-empty. Mask 0 is the background; masks of absent
objects (scenes with fewer than MAX_OBJECTS) are empty.
"""
from __future__ import annotations

import numpy as np

from .shapes3d_renderer import pixel_coverage

MAX_OBJECTS = 6
MIN_OBJECTS = 3
NUM_MASKS = MAX_OBJECTS + 1
SHAPES = ("sphere", "cube", "cylinder", "cone")
# CLEVR's palette: gray, red, blue, green, brown, purple, cyan, yellow.
COLOURS = np.array([[87, 87, 87], [173, 35, 35], [42, 75, 215], [29, 105, 20],
                    [129, 74, 25], [129, 38, 192], [41, 208, 208], [255, 238, 51]]) / 255.0
RADII = (0.075, 0.115)  # small, large (fraction of the image side, at mid depth)
_MIN_VISIBLE_FRACTION = 0.3


class SceneRenderer:
    def __init__(self, size: int = 64):
        self.size = int(size)
        centres = (np.arange(self.size) + 0.5) / self.size
        self.v, self.u = np.meshgrid(centres, centres, indexing="ij")
        self.backdrop = (0.62 - 0.12 * self.v)[..., None] * np.ones(3)

    def sample_objects(self, rng: np.random.Generator) -> list[dict]:
        count = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
        objects = []
        for _ in range(count):
            depth = rng.uniform(0.4, 0.85)  # image row of the object's base; nearer is lower
            objects.append({
                "shape": int(rng.integers(len(SHAPES))),
                "colour": int(rng.integers(len(COLOURS))),
                # Perspective: nearer objects are larger.
                "radius": RADII[int(rng.integers(2))] * (0.7 + 0.6 * depth),
                "u": rng.uniform(0.12, 0.88),
                "v": depth,
            })
        return sorted(objects, key=lambda o: o["v"])  # far to near = drawing order

    def _coverage(self, obj: dict):
        """Anti-aliased coverage and shading of one object."""
        u, v = self.u - obj["u"], self.v
        r = obj["radius"]
        shape = SHAPES[obj["shape"]]
        if shape == "sphere":
            cv = obj["v"] - r
            distance = np.hypot(u, v - cv) - r
            nx, ny = np.clip(u / r, -1, 1), np.clip((v - cv) / r, -1, 1)
            shade = 0.45 + 0.65 * np.clip(np.sqrt(np.clip(1 - nx**2 - ny**2, 0, 1)) * 0.8
                                          - 0.45 * nx - 0.35 * ny, 0, 1)
        elif shape == "cube":
            cv = obj["v"] - r
            distance = np.maximum(np.abs(u) - r, np.abs(v - cv) - r)
            top = v < cv - 0.45 * r
            shade = np.where(top, 1.05, np.where(u < 0, 0.8, 0.62))
        elif shape == "cylinder":
            height = 1.8 * r
            cv = obj["v"] - height / 2
            distance = np.maximum(np.abs(u) - 0.85 * r, np.abs(v - cv) - height / 2)
            shade = 0.55 + 0.45 * np.sqrt(np.clip(1 - (u / (0.85 * r) + 0.3) ** 2, 0, 1))
        else:  # cone: a triangle standing on its base
            height = 2.0 * r
            apex = obj["v"] - height
            t = np.clip((v - apex) / height, 0, 1)  # 0 at the apex, 1 at the base
            distance = np.maximum(np.abs(u) - r * t, np.maximum(apex - v, v - obj["v"]))
            shade = 0.6 + 0.35 * (1 - np.abs(u) / r) * t
        return pixel_coverage(distance, self.size), np.clip(shade, 0.0, 1.1)

    def render(self, objects: list[dict]):
        """(image uint8 (H, W, 3), masks bool (NUM_MASKS, H, W)) or None if an object is hidden."""
        image = self.backdrop.copy()
        labels = np.zeros((self.size, self.size), dtype=np.int64)
        full_areas = []
        for number, obj in enumerate(objects, start=1):
            coverage, shade = self._coverage(obj)
            colour = COLOURS[obj["colour"]]
            image = image * (1 - coverage[..., None]) + coverage[..., None] * shade[..., None] * colour
            labels[coverage >= 0.5] = number
            full_areas.append(int(np.count_nonzero(coverage >= 0.5)))
        visible = np.bincount(labels.ravel(), minlength=len(objects) + 1)[1:]
        if np.any(visible < np.maximum(2, _MIN_VISIBLE_FRACTION * np.array(full_areas))):
            return None
        masks = labels[None] == np.arange(NUM_MASKS)[:, None, None]
        return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), masks

    def sample(self, rng: np.random.Generator):
        """One scene (image, masks), resampling placements until every object shows."""
        while True:
            scene = self.render(self.sample_objects(rng))
            if scene is not None:
                return scene
