"""The scene in front of the camera: a background and a cartoon person (body, neck, hair, face)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fasd.data.synth.raster import Grid, col, paint, rgb, soft
from fasd.data.synth.domains import REFERENCE_SIZE

def background(grid: Grid, p: dict, first: str, second: str) -> np.ndarray:
    """A two-colour gradient with soft blotches and, in some domains, fine wallpaper stripes."""
    angle = col(p["bg_angle"])
    ramp = 0.5 + 0.5 * (grid.X * np.cos(angle) + grid.Y * np.sin(angle))
    texture = 1 + 0.12 * np.cos(col(p["bg_wave_x"]) * grid.X + col(p["bg_phase"])) * np.cos(
        col(p["bg_wave_y"]) * grid.Y)
    wall = col(p["wall_angle"])
    stripes = 1 + col(p["wall_amp"]) * np.cos(
        col(p["wall_freq"]) * (REFERENCE_SIZE / 2) * (grid.X * np.cos(wall) + grid.Y * np.sin(wall)))
    c0, c1 = col(p[first]), col(p[second])
    return (c0 + (c1 - c0) * ramp) * (texture * stripes)


FACE_EDGE = 0.06


@dataclass
class Face:
    """Where the face is in each frame of a block: face coordinates (u, v) in which the face is the unit
    disc, and the soft masks of the body, neck, hair and face (all (B, 1, H, W) or broadcastable)."""

    u: np.ndarray
    v: np.ndarray
    radius: np.ndarray
    body: np.ndarray
    neck: np.ndarray
    hair: np.ndarray
    face: np.ndarray

    @classmethod
    def of(cls, grid: Grid, p: dict) -> "Face":
        X, Y = grid.X, grid.Y
        cx, cy = col(p["cx"] + p["jitter_x"]), col(p["cy"] + p["jitter_y"])
        ax = col(p["scale"] * p["scale_jitter"])
        ay = ax * col(p["aspect"])
        roll = col(p["roll"] + p["roll_jitter"])
        dx, dy = X - cx, Y - cy
        u = (dx * np.cos(roll) + dy * np.sin(roll)) / ax
        v = (-dx * np.sin(roll) + dy * np.cos(roll)) / ay
        radius = np.sqrt(u * u + v * v)
        body = soft(Y - (cy + 1.05 * ay + 0.35 * dx * dx / ax), 0.03)
        neck = soft(0.42 - np.abs(dx) / ax, FACE_EDGE) * soft(Y - cy, 0.03) * (1 - body)
        hair = soft(col(p["hair_volume"]) - radius, FACE_EDGE) * soft(0.25 - v, FACE_EDGE)
        face = soft(1 - radius, FACE_EDGE * (1 - 0.7 * col(p["is_mask"])))
        return cls(u, v, radius, body, neck, hair, face)


def paint_scene(grid: Grid, p: dict, geometry: Face) -> np.ndarray:
    """A face in front of a background: the live frame, the photo on a medium, or a masked face."""
    u, v = geometry.u, geometry.v
    skin, hair, is_mask = col(p["skin"]), col(p["hair"]), col(p["is_mask"])
    image = background(grid, p, "bg0", "bg1")

    image = paint(image, geometry.body, col(p["clothes"]))
    image = paint(image, geometry.neck, skin * 0.8)
    image = paint(image, geometry.hair, hair)

    # Skin: 3-D shading (flattened on a mask) and, on a mask, a plastic tint and a sharper edge.
    shade = 1 - (1 - 0.65 * is_mask) * (0.35 * u * u + 0.2 * np.clip(v, 0, None) ** 2)
    face_skin = (skin + is_mask * 0.5 * (rgb(0.86, 0.76, 0.62) - skin)) * shade
    face = geometry.face
    image = paint(image, face, face_skin)
    image = paint(image, face * soft(col(p["hair_line"]) + 0.08 * np.cos(6 * u) - v, 0.05), hair)

    yaw = col(p["yaw"])
    sclera = col(0.92 - 0.7 * p["is_mask"])  # a mask's eye holes are dark
    eye, iris, (eu, ev, eye_w) = eyes(p, u, v)
    image = paint(image, eye, sclera)
    image = paint(image, iris * (1 - is_mask), col(p["iris"]))
    brow = soft(1 - np.sqrt((eu / (1.2 * eye_w)) ** 2 + ((ev + 0.17) / 0.035) ** 2), 0.4)
    image = paint(image, brow, hair * 0.8)
    nose = soft(1 - np.sqrt(((u - 1.3 * yaw) / 0.07) ** 2 + ((v - 0.14) / 0.2) ** 2), 0.5)
    image = image * (1 - 0.15 * nose)
    mouth = np.sqrt(((u - yaw) / col(p["mouth_w"])) ** 2
                    + ((v - col(p["mouth_y"])) / col(0.045 + 0.06 * p["mouth_open"])) ** 2)
    image = paint(image, soft(1 - mouth, 0.3), skin * rgb(0.95, 0.55, 0.55))
    image = paint(image, soft(0.6 - mouth, 0.2) * col(p["mouth_open"] > 0.25), rgb(0.2, 0.06, 0.06))

    glare = col(p["skin_glare"]) * np.exp(-((u + 0.2 * yaw) ** 2 + (v + 0.45) ** 2) / 0.03) * face
    return image + glare


def eyes(p: dict, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Soft masks of both eyes and both irises, and the eye-relative coordinates (eu, ev) and eye width."""
    yaw = col(p["yaw"])
    eye_w, eye_h = col(p["eye_w"]), col(p["eye_w"] * 0.55 * p["eye_open"])
    eu, ev = np.abs(u - yaw) - col(p["eye_sep"]), v - col(p["eye_y"])  # both eyes at once
    eye = soft(1 - np.sqrt((eu / eye_w) ** 2 + (ev / eye_h) ** 2), 0.3)
    iris = soft(0.55 - np.sqrt(eu * eu + ev * ev) / eye_w, 0.1) * soft(1 - np.abs(ev) / eye_h, 0.3)
    return eye, iris, (eu, ev, eye_w)

