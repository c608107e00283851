"""Depth and near-infrared: one closeness map per frame (the scene's 3-D shape), seen by each sensor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fasd.data.synth.attacks import inside_medium, medium_coordinates
from fasd.data.synth.domains import FRAMES_PER_VIDEO, SensorStyle
from fasd.data.synth.raster import Grid, col, gaussian_blur, jpeg, paint, soft
from fasd.data.synth.scene import Face, eyes

def plan_sensors(style: SensorStyle, params: dict[str, np.ndarray], frames: int,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-frame depth/IR parameters: scene geometry and NIR reflectance per video, sensor state per frame."""
    frame_video = np.arange(frames) // FRAMES_PER_VIDEO
    first = np.arange(0, frames, FRAMES_PER_VIDEO)  # a video's first frame carries its kind
    n = len(first)
    is_mask, is_print = params["is_mask"][first], params["is_print"][first]
    skin_luma = params["skin"][first].mean(axis=1)
    # Mask materials (resin, latex, paper) reflect NIR unlike skin: darker or brighter, never skin-like.
    mask_ir = np.where(rng.random(n) < 0.5, rng.uniform(0.25, 0.42, n), rng.uniform(0.88, 1.0, n))
    video = {
        "wall_tilt": rng.uniform(0, 0.08, n), "wall_angle": rng.uniform(0, 2 * np.pi, n),
        "person_z": rng.uniform(0.4, 0.5, n),
        # A mask is worn on a real head: face-shaped but smoother (no eye sockets, a flatter nose).
        "relief": rng.uniform(0.2, 0.3, n) * np.where(is_mask, 0.85, 1.0),
        "nose": rng.uniform(0.06, 0.1, n) * np.where(is_mask, 0.6, 1.0),
        "sockets": np.where(is_mask, 0.0, rng.uniform(0.03, 0.06, n)),
        # A print or screen is a plane, tilted in the hand; paper may bend a little.
        "med_z": rng.uniform(0.45, 0.65, n), "tilt_x": rng.normal(0, 0.08, n), "tilt_y": rng.normal(0, 0.08, n),
        "bend": rng.uniform(0, 0.06, n) * is_print,
        "wall_ir": rng.uniform(0.3, 0.7, n), "clothes_ir": rng.uniform(0.2, 0.9, n),
        "hair_ir": rng.uniform(0.3, 0.6, n),
        # Skin's NIR reflectance varies much less with tone than its visible colour does.
        "skin_ir": np.where(is_mask, mask_ir, 0.6 + 0.15 * skin_luma + rng.normal(0, 0.03, n)),
        "paper_ir": rng.uniform(0.75, 0.95, n), "screen_ir": rng.uniform(0.03, 0.1, n),
        "glint": rng.uniform(0.3, 0.8, n) * (rng.random(n) < 0.6),  # the illuminator mirrored in the glass
        "glint_x": rng.uniform(-0.5, 0.5, n), "glint_y": rng.uniform(-0.5, 0.5, n),
    }
    per_frame = {key: value[frame_video] for key, value in video.items()}
    per_frame.update({"distance": rng.normal(0, 0.02, frames), "ir_gain": rng.normal(1, 0.05, frames),
                      "depth_blur": style.depth_blur * rng.uniform(0.8, 1.25, frames)})
    return per_frame




@dataclass
class Sensors:
    """A block's depth/IR rendering: the domain's sensors, the block's sensor parameters, and a noise
    generator for each modality to render (depth's and IR's are independent of each other)."""

    style: SensorStyle
    q: dict[str, np.ndarray]
    rngs: dict[str, np.random.Generator]

    def render(self, grid: Grid, p: dict, geometry: Face, luma: np.ndarray) -> dict[str, np.ndarray]:
        q, style = self.q, self.style
        mu, mv = medium_coordinates(grid, p)
        medium = col(p["medium"]) * soft(inside_medium(p, mu, mv), 0.02)  # 1 on a print or screen
        screen = medium * col(p["is_replay"])
        wall = col(q["wall_tilt"]) * (grid.X * np.cos(col(q["wall_angle"])) + grid.Y * np.sin(col(q["wall_angle"])))
        plane = (col(q["med_z"]) + col(q["tilt_x"]) * mu + col(q["tilt_y"]) * mv
                 + col(q["bend"]) * (1 - np.clip(mu, -1, 1) ** 2))
        person, dome = _person_closeness(p, q, geometry, wall)
        closeness = paint(paint(person, col(p["medium"]), wall), medium, plane)
        frames = {}
        if "depth" in self.rngs:
            rng = self.rngs["depth"]
            depth = style.depth_offset + style.depth_gain * (closeness + col(q["distance"]))
            depth = gaussian_blur(depth, q["depth_blur"] / grid.pixel)
            depth += style.depth_noise * rng.standard_normal(depth.shape, dtype=np.float32)
            holes = style.depth_holes * (screen + (1 - col(p["medium"])) * geometry.hair * (1 - geometry.face) / 3)
            frames["depth"] = _encode(np.where(rng.random(depth.shape) < holes, 0, depth), p)
        if "ir" in self.rngs:
            albedo = _ir_albedo(p, q, geometry, luma, medium, style.ink_ir)
            # Lambertian with the light at the camera: brightness follows the surface's facing, the
            # z-component of its normal; for the head's ellipsoid that is its dome, a plane's is its tilt.
            head = np.maximum(geometry.hair, geometry.face) * (1 - col(p["medium"]))
            tilt = 1 / np.sqrt(1 + (IR_RELIEF * col(q["tilt_x"])) ** 2 + (IR_RELIEF * col(q["tilt_y"])) ** 2)
            facing = paint(paint(np.ones_like(closeness), head, 0.35 + 0.65 * dome), medium, tilt)
            light = np.clip(1 + style.ir_falloff * (closeness - 0.5), 0.1, None) * col(q["ir_gain"])
            glint = screen * col(q["glint"]) * np.exp(
                -((grid.X - col(q["glint_x"])) ** 2 + (grid.Y - col(q["glint_y"])) ** 2) / 0.02)
            ir = np.clip(style.ir_ambient + style.ir_gain * albedo * facing * light + glint, 0, 1) ** style.ir_gamma
            ir += style.ir_noise * self.rngs["ir"].standard_normal(ir.shape, dtype=np.float32)
            frames["ir"] = _encode(ir, p)
        return frames


IR_RELIEF = 3.0  # closeness units -> image half-widths, for the tilt of a held medium's normal


def _person_closeness(p: dict, q: dict, geometry: Face, wall: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The live (or masked) person in front of the wall (torso, neck, a head with a face relief), and the
    head's dome (the z-component of its ellipsoid's normal)."""
    u, v, yaw = geometry.u, geometry.v, col(p["yaw"])
    person = col(q["person_z"])
    dome = np.sqrt(np.clip(1 - (geometry.radius / 1.15) ** 2, 0, None))
    nose = col(q["nose"]) * np.exp(-(((u - 1.3 * yaw) / 0.12) ** 2 + ((v - 0.1) / 0.25) ** 2))
    sockets = col(q["sockets"]) * np.exp(-(((np.abs(u - yaw) - col(p["eye_sep"])) / 0.12) ** 2
                                             + ((v - col(p["eye_y"])) / 0.08) ** 2))
    closeness = paint(wall, geometry.body, person)
    closeness = paint(closeness, geometry.neck, person + 0.05)
    head = np.maximum(geometry.hair, geometry.face)
    return paint(closeness, head, person + 0.1 + col(q["relief"]) * dome + nose - sockets), dome


def _ir_albedo(p: dict, q: dict, geometry: Face, luma: np.ndarray, medium: np.ndarray,
               ink_ir: float) -> np.ndarray:
    """NIR reflectance: skin bright and tone-independent, mask material unlike skin, dark pupils; a
    print shows its picture faintly (as much as its ink absorbs NIR); a screen emits no NIR and is dark."""
    albedo = paint(np.broadcast_to(col(q["wall_ir"]), geometry.u.shape), geometry.body, col(q["clothes_ir"]))
    albedo = paint(albedo, geometry.neck, col(q["skin_ir"]))
    albedo = paint(albedo, geometry.hair, col(q["hair_ir"]))
    albedo = paint(albedo, geometry.face, col(q["skin_ir"]))
    eye, iris, _ = eyes(p, geometry.u, geometry.v)
    albedo = paint(albedo, eye * geometry.face, 0.7)
    albedo = paint(albedo, iris * geometry.face, 0.12)
    print_albedo = col(q["paper_ir"]) * (1 - ink_ir * (1 - np.clip(luma, 0, 1)))
    shown = col(p["is_print"]) * print_albedo + col(p["is_replay"]) * col(q["screen_ir"])
    return paint(paint(albedo, col(p["medium"]), col(q["wall_ir"])), medium, shown)


def _encode(image: np.ndarray, p: dict) -> np.ndarray:
    """(B, 1, H, W) in [0, 1] -> JPEG-compressed (B, H, W, 3) uint8, grey in all three channels."""
    frames = (np.clip(image[:, 0], 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.stack([jpeg(frame, int(quality)) for frame, quality in zip(frames, p["quality"])])
