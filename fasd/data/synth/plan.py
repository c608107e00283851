"""Planning a domain: who is in which video and split, and every random parameter of every frame."""

from __future__ import annotations

import math

import numpy as np

from fasd.constants import LABEL_LIVE, LABEL_SPOOF
from fasd.data.synth.domains import (ATTACKS, FRAMES_PER_VIDEO, SPLIT_FRACTIONS, VIDEOS_PER_SUBJECT,
                                     DomainStyle)


def plan_frames(name: str, style: DomainStyle, frames: int,
          rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-frame metadata columns and per-frame render parameters (arrays with first axis = frame)."""
    per_subject = VIDEOS_PER_SUBJECT * FRAMES_PER_VIDEO
    subjects = math.ceil(frames / per_subject)
    videos = subjects * VIDEOS_PER_SUBJECT

    order = rng.permutation(subjects)
    counts = {s: max(1, round(SPLIT_FRACTIONS[s] * subjects)) for s in ("val", "test")}
    subject_split = np.empty(subjects, dtype=object)
    subject_split[order[:counts["test"]]] = "test"
    subject_split[order[counts["test"]:counts["test"] + counts["val"]]] = "val"
    subject_split[order[counts["test"] + counts["val"]:]] = "train"

    video_subject = np.repeat(np.arange(subjects), VIDEOS_PER_SUBJECT)
    video_kind = np.where(np.arange(videos) % VIDEOS_PER_SUBJECT == 0, "live",
                          rng.choice(ATTACKS, size=videos, p=style.attacks)).astype(str)
    frame_video = np.repeat(np.arange(videos), FRAMES_PER_VIDEO)[:frames]
    frame_index = np.tile(np.arange(FRAMES_PER_VIDEO), videos)[:frames]
    video_id = np.array([f"{name}_s{s:04d}_v{v % VIDEOS_PER_SUBJECT}" for v, s in enumerate(video_subject)])
    kind = video_kind[frame_video]
    meta = {
        "frame_id": np.char.add(video_id[frame_video], np.char.add("_frame", frame_index.astype(str))),
        "label": np.where(kind == "live", LABEL_LIVE, LABEL_SPOOF).astype(np.int8),
        "split": subject_split[video_subject[frame_video]].astype(str),
        "video_id": video_id[frame_video],
        "attack_type": np.where(kind == "live", "", kind),
    }
    params = {key: value[video_subject[frame_video]] for key, value in _subjects(subjects, rng).items()}
    params.update({key: value[frame_video] for key, value in _videos(style, video_kind, rng).items()})
    params.update(_frames(style, frames, rng))
    return meta, params


HAIR = np.array([[0.08, 0.06, 0.05], [0.30, 0.19, 0.11], [0.72, 0.58, 0.34], [0.60, 0.60, 0.60],
                 [0.52, 0.24, 0.12]], dtype=np.float32)
IRIS = np.array([[0.25, 0.15, 0.08], [0.30, 0.45, 0.65], [0.35, 0.45, 0.25], [0.10, 0.08, 0.06]],
                dtype=np.float32)


def _subjects(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Identity: what stays the same in all of a subject's videos."""
    tone = rng.uniform(0, 1, (n, 1))
    skin = (1 - tone) * [0.95, 0.80, 0.68] + tone * [0.45, 0.30, 0.21] + rng.normal(0, 0.025, (n, 3))
    return {
        "skin": skin, "hair": HAIR[rng.integers(0, len(HAIR), n)] + rng.normal(0, 0.03, (n, 3)),
        "iris": IRIS[rng.integers(0, len(IRIS), n)], "clothes": rng.uniform(0.08, 0.9, (n, 3)),
        "hair_line": rng.uniform(-0.7, -0.4, n), "hair_volume": rng.uniform(1.06, 1.28, n),
        "aspect": rng.uniform(1.15, 1.4, n), "eye_sep": rng.uniform(0.3, 0.4, n),
        "eye_y": rng.uniform(-0.2, -0.06, n), "eye_w": rng.uniform(0.11, 0.15, n),
        "mouth_w": rng.uniform(0.22, 0.36, n), "mouth_y": rng.uniform(0.42, 0.56, n),
    }


def _videos(style: DomainStyle, kind: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A recording: pose, scene, light and, for attacks, the medium and its cues."""
    n = len(kind)
    is_print, is_replay, is_mask = (kind == "print"), (kind == "replay"), (kind == "mask")
    edge_in_view = rng.random(n) < style.border

    def angular(period: tuple[float, float]) -> np.ndarray:
        return 2 * np.pi / rng.uniform(*period, n)

    def medium_half() -> np.ndarray:  # a medium whose edge is out of view covers the whole frame
        return np.where(edge_in_view, rng.uniform(0.65, 0.95, n), 3.0)

    return {
        "cx": rng.normal(0, 0.06, n), "cy": rng.normal(-0.05, 0.05, n), "scale": rng.uniform(0.34, 0.44, n),
        "roll": rng.normal(0, 0.1, n), "yaw": rng.normal(0, 0.07, n),
        "bg0": rng.uniform(0.1, 0.9, (n, 3)), "bg1": rng.uniform(0.1, 0.9, (n, 3)),
        "bg_angle": rng.uniform(0, 2 * np.pi, n), "bg_wave_x": rng.uniform(1.5, 5, n),
        "bg_wave_y": rng.uniform(1.5, 5, n), "bg_phase": rng.uniform(0, 2 * np.pi, n),
        "wall_angle": rng.uniform(0, np.pi, n), "wall_freq": angular((2.5, 4.5)),
        "wall_amp": style.wallpaper * (rng.random(n) < 0.5), "light_angle": rng.uniform(0, 2 * np.pi, n),
        "skin_glare": (style.skin_glare * rng.uniform(0.5, 1.2, n) * (rng.random(n) < style.skin_glare)
                       + 0.3 * is_mask),
        "medium": is_print | is_replay, "is_print": is_print, "is_replay": is_replay, "is_mask": is_mask,
        # print and replay: the medium's rectangle, its edge and the real scene around it
        "med_half_x": medium_half(), "med_half_y": medium_half(),
        "med_x": rng.normal(0, 0.06, n), "med_y": rng.normal(0, 0.06, n), "med_angle": rng.normal(0, 0.08, n),
        "med_edge": rng.uniform(0.04, 0.09, n),
        "out0": rng.uniform(0.1, 0.9, (n, 3)), "out1": rng.uniform(0.1, 0.9, (n, 3)),
        "range_lo": style.range_loss * rng.uniform(0.2, 0.5, n),
        "range_hi": 1 - style.range_loss * rng.uniform(0.3, 0.7, n),
        "halftone": style.halftone * rng.uniform(0.6, 1.2, n) * is_print,
        "halftone_freq": angular(style.halftone_period), "halftone_angle": rng.uniform(*style.halftone_angle, n),
        "grid": style.pixel_grid * rng.uniform(0.6, 1.2, n) * is_replay, "grid_freq": angular(style.grid_period),
        "moire": style.moire * rng.uniform(0.5, 1.2, n) * is_replay,
        "moire_freq": angular((12, 30)), "moire_angle": rng.uniform(0, np.pi, n),
        "screen_glare": style.screen_glare * rng.uniform(0.3, 1.2, n) * is_replay,
        "glare_x": rng.uniform(-0.6, 0.6, n), "glare_y": rng.uniform(-0.6, 0.6, n),
        "glare_radius": rng.uniform(0.15, 0.4, n),
    }


def _frames(style: DomainStyle, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Small changes from frame to frame within a video, and the camera's per-frame state."""
    return {
        "jitter_x": rng.normal(0, 0.012, n), "jitter_y": rng.normal(0, 0.012, n),
        "scale_jitter": rng.normal(1, 0.015, n), "roll_jitter": rng.normal(0, 0.02, n),
        "shake_x": rng.normal(0, 0.01, n), "shake_y": rng.normal(0, 0.01, n),
        "eye_open": np.where(rng.random(n) < 0.1, 0.2, rng.uniform(0.8, 1.0, n)),
        "mouth_open": rng.uniform(0, 0.5, n), "gain": style.gain * rng.normal(1, 0.04, n),
        "blur": style.blur * rng.uniform(0.8, 1.25, n), "quality": rng.integers(*style.jpeg, n, endpoint=True),
    }

