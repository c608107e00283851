"""Rendering a block of frames: scene -> attack medium -> camera (and depth/IR sensors)."""

from __future__ import annotations

import numpy as np

from fasd.data.synth.attacks import show_on_medium
from fasd.data.synth.domains import DomainStyle
from fasd.data.synth.raster import Grid, col, gaussian_blur, jpeg, rgb
from fasd.data.synth.scene import Face, paint_scene
from fasd.data.synth.sensors import Sensors

def render_block(grid: Grid, style: DomainStyle, p: dict[str, np.ndarray], rng: np.random.Generator,
                 sensors: Sensors | None = None) -> dict[str, np.ndarray]:
    """A block's uint8 (B, H, W, 3) frames: ``images`` (RGB) and, with ``sensors``, its depth and/or IR."""
    geometry = Face.of(grid, p)
    scene = paint_scene(grid, p, geometry)
    luma = scene.mean(axis=1, keepdims=True) if sensors is not None else None  # what a print shows
    shown = np.flatnonzero(p["medium"])  # frames of a print or replay attack
    if len(shown):
        scene[shown] = show_on_medium(grid, style, {k: v[shown] for k, v in p.items()}, scene[shown])
    frames = {"images": camera(grid, style, p, scene, rng)}
    if sensors is not None:
        frames.update(sensors.render(grid, p, geometry, luma))
    return frames



def camera(grid: Grid, style: DomainStyle, p: dict, image: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    """Light, optics, sensor and encoder of the domain's camera; returns uint8 (B, H, W, 3) frames."""
    light = col(p["light_angle"])
    shading = col(p["gain"]) * (1 + style.light_slope * (grid.X * np.cos(light) + grid.Y * np.sin(light)))
    image = image * shading * rgb(*style.cast)
    image = np.clip(gaussian_blur(image, p["blur"] / grid.pixel), 0, 1)
    image = image + style.noise * np.sqrt(image + 0.02) * rng.standard_normal(image.shape, dtype=np.float32)
    frames = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    return np.stack([jpeg(frame, int(q)) for frame, q in zip(frames, p["quality"])])


