"""Synthetic cross-domain face anti-spoofing benchmark (``fasd synth``).

Each domain is one "dataset": its own subjects, scenes and camera, written as an HDF5 frame pack.
Domains are named, in order, alpha, beta, gamma, delta, epsilon, zeta, eta, theta; with the default
three domains the protocols are holdout-alpha, holdout-beta and holdout-gamma.

Every subject (a cartoon face with its own skin, hair, eyes, mouth and clothes) has one live video and
two attack videos (print, replay or mask) of FRAMES_PER_VIDEO frames each, so a third of the frames are
live. Splits are drawn by subject, so no subject, and hence no video, is in two splits.

Domains differ by camera (exposure, colour cast, directional light, blur, sensor noise, JPEG quality)
and scenes, and their attacks leave different recapture cues at different strengths: halftone dots,
a screen-door pixel grid, moiré bands, reduced dynamic range, glare, a visible paper or screen edge.
The cues are weaker and lower in frequency in later domains, and some domains' nuisances look like
another domain's cues (beta's fine wallpaper stripes vs. alpha's halftone, gamma's cool cast vs. the
screens' blue cast, gamma's blur hiding fine patterns, live skin glare vs. screen glare), so a model
trained on two domains transfers to the third well above chance but far from perfectly.

With ``modalities`` including depth and/or ir, each frame also gets a depth and a near-infrared image
(3-channel grey, as the MMDG lists store them) rendered from one 3-D scene: a live face (and a worn 3-D
mask) has a curved relief in front of the wall, a print or screen is a tilted plane (paper slightly
bent; a glossy screen loses depth pixels). In IR the camera's own illuminator lights the scene: skin
is bright whatever its visible tone, mask materials reflect unlike skin, a print shows its picture as
faintly as its ink absorbs NIR, and a screen, which emits no NIR, is dark but for a glint. Each domain
has its own depth sensor (offset, gain, noise, holes, blur) and IR sensor (gain, response curve,
ambient sunlight, noise, fall-off, ink), so the cues transfer across domains imperfectly. Depth and IR
draw from their own random streams: the RGB images are the same with or without them.
"""

from __future__ import annotations

import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from PIL import Image
from tqdm import tqdm

from fasd.config import write_config
from fasd.constants import LABEL_LIVE, LABEL_SPOOF, MODALITIES, SPLITS
from fasd.data.hdf5_pack import PackWriter
from fasd.errors import FasdError

SYNTH_SOURCE = "synthetic"  # the packs' "source" attribute: what marks a pack fasd synth may replace
DOMAIN_NAMES = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
DEFAULT_FRAMES = 600
FRAMES_PER_VIDEO = 4
VIDEOS_PER_SUBJECT = 3  # one live video, two attack videos
SPLIT_FRACTIONS = {"train": 0.60, "val": 0.15, "test": 0.25}
MIN_SIZE = 32
REFERENCE_SIZE = 112  # spatial parameters below are in pixels of a 112 x 112 frame
BLOCK = 16  # frames rendered per vectorised step
MAX_THREADS = 8  # each rendering thread holds a few dozen block-sized float arrays
ATTACKS = ("print", "replay", "mask")


@dataclass(frozen=True)
class DomainStyle:
    """How one domain's camera, scenes and attack media look (strengths are image-intensity fractions)."""

    gain: float  # exposure
    cast: tuple[float, float, float]  # per-channel colour gain
    light_slope: float  # strength of directional illumination
    blur: float  # Gaussian sigma, reference pixels
    noise: float  # sensor noise std
    jpeg: tuple[int, int]  # JPEG quality range
    wallpaper: float  # fine stripes in backgrounds (a nuisance that resembles halftone)
    skin_glare: float  # probability (and strength) of a specular highlight on a face
    attacks: tuple[float, float, float]  # probability of print, replay, mask
    halftone: float  # print dot-pattern contrast
    halftone_period: tuple[float, float]  # reference pixels
    pixel_grid: float  # screen-door contrast of a replay
    grid_period: tuple[float, float]
    moire: float  # moiré band contrast of a replay
    range_loss: float  # dynamic range lost by a print or screen
    screen_glare: float  # glare strength on a screen
    border: float  # probability that the medium's edge is in view


STYLES = (
    # alpha: bright studio, clean camera; strong fine halftone and pixel grid.
    DomainStyle(gain=1.0, cast=(1.0, 1.0, 1.0), light_slope=0.15, blur=0.5, noise=0.01, jpeg=(88, 96),
                wallpaper=0.0, skin_glare=0.05, attacks=(0.5, 0.5, 0.0), halftone=0.22,
                halftone_period=(2.6, 3.4), pixel_grid=0.18, grid_period=(2.2, 3.0), moire=0.06,
                range_loss=0.30, screen_glare=0.25, border=0.7),
    # beta: dim warm office, noisy sensor, fine wallpaper; coarser halftone, moiré rather than grid.
    DomainStyle(gain=0.78, cast=(1.12, 1.0, 0.82), light_slope=0.35, blur=0.8, noise=0.04, jpeg=(70, 86),
                wallpaper=0.10, skin_glare=0.3, attacks=(0.3, 0.5, 0.2), halftone=0.15,
                halftone_period=(3.4, 5.0), pixel_grid=0.10, grid_period=(2.8, 3.8), moire=0.16,
                range_loss=0.40, screen_glare=0.35, border=0.5),
    # gamma: cool outdoor phone camera, blurry, heavy JPEG; weak, coarse cues and masks.
    DomainStyle(gain=1.12, cast=(0.9, 1.0, 1.12), light_slope=0.25, blur=1.1, noise=0.02, jpeg=(45, 66),
                wallpaper=0.05, skin_glare=0.2, attacks=(0.4, 0.3, 0.3), halftone=0.10,
                halftone_period=(4.0, 6.0), pixel_grid=0.08, grid_period=(3.2, 4.4), moire=0.10,
                range_loss=0.20, screen_glare=0.2, border=0.35),
)


def domain_style(index: int) -> DomainStyle:
    """The fixed style of domain ``index``: hand-set for the first three, drawn (by index) after that."""
    if index < len(STYLES):
        return STYLES[index]
    rng = np.random.default_rng([7919, index])

    def u(low: float, high: float) -> float:
        return float(rng.uniform(low, high))

    attacks = rng.dirichlet([2.0, 2.0, 1.0])
    low = u(2.4, 4.5)  # finest pattern period, reference pixels
    return DomainStyle(
        gain=u(0.75, 1.15), cast=tuple(u(0.88, 1.12) for _ in range(3)), light_slope=u(0.1, 0.4),
        blur=u(0.4, 1.2), noise=u(0.01, 0.045), jpeg=(int(u(45, 75)), int(u(80, 96))),
        wallpaper=u(0.0, 0.1), skin_glare=u(0.05, 0.3), attacks=tuple(float(a) for a in attacks),
        halftone=u(0.08, 0.2), halftone_period=(low, low + 1.5), pixel_grid=u(0.06, 0.16),
        grid_period=(low - 0.2, low + 1.0), moire=u(0.05, 0.16), range_loss=u(0.15, 0.4),
        screen_glare=u(0.15, 0.35), border=u(0.3, 0.7))


@dataclass(frozen=True)
class SensorStyle:
    """A domain's depth and near-infrared (IR) sensors. Depth is encoded brighter = closer; scene
    closeness is in units where the person stands about 0.45 in front of the wall."""

    depth_offset: float  # encoded value of the wall's distance
    depth_gain: float  # encoded units per unit of closeness
    depth_noise: float  # per-pixel noise std
    depth_holes: float  # fraction of invalid (zero) depth pixels on a glossy screen (a third of it on hair)
    depth_blur: float  # Gaussian sigma, reference pixels
    ir_gain: float  # active illuminator power x sensor gain
    ir_gamma: float  # response curve: > 1 darkens mid-tones, < 1 flattens contrast
    ir_ambient: float  # ambient NIR (sunlight): a flat offset that washes contrast out
    ir_noise: float
    ir_falloff: float  # how much brighter closer surfaces are under the camera's own illuminator
    ink_ir: float  # fraction of a print's visible contrast its ink keeps in NIR (toner high, dye low)


SENSORS = (
    # alpha: structured-light camera in a studio: clean depth, holes on screens, bright toner prints in IR.
    SensorStyle(depth_offset=0.25, depth_gain=0.45, depth_noise=0.012, depth_holes=0.30, depth_blur=0.8,
                ir_gain=0.8, ir_gamma=1.0, ir_ambient=0.02, ir_noise=0.02, ir_falloff=0.6, ink_ir=0.6),
    # beta: time-of-flight camera: noisier, blurrier depth, farther offset; dimmer IR, inkjet prints.
    SensorStyle(depth_offset=0.35, depth_gain=0.35, depth_noise=0.035, depth_holes=0.15, depth_blur=1.2,
                ir_gain=0.65, ir_gamma=1.3, ir_ambient=0.05, ir_noise=0.04, ir_falloff=0.4, ink_ir=0.3),
    # gamma: outdoor stereo depth: coarse and noisy, few holes; sunlight floods the IR image.
    SensorStyle(depth_offset=0.15, depth_gain=0.55, depth_noise=0.05, depth_holes=0.05, depth_blur=1.6,
                ir_gain=0.6, ir_gamma=0.8, ir_ambient=0.25, ir_noise=0.03, ir_falloff=0.25, ink_ir=0.15),
)


def sensor_style(index: int) -> SensorStyle:
    """The fixed depth/IR sensors of domain ``index``: hand-set for the first three, drawn after that."""
    if index < len(SENSORS):
        return SENSORS[index]
    rng = np.random.default_rng([7919, index, 1])

    def u(low: float, high: float) -> float:
        return float(rng.uniform(low, high))

    return SensorStyle(
        depth_offset=u(0.1, 0.4), depth_gain=u(0.3, 0.6), depth_noise=u(0.01, 0.05), depth_holes=u(0.0, 0.3),
        depth_blur=u(0.6, 1.8), ir_gain=u(0.55, 0.85), ir_gamma=u(0.8, 1.3), ir_ambient=u(0.0, 0.25),
        ir_noise=u(0.015, 0.045), ir_falloff=u(0.2, 0.6), ink_ir=u(0.1, 0.6))


def _refuse_foreign_pack(path: Path) -> None:
    """Only a pack ``fasd synth`` wrote may be replaced by a new one."""
    if not path.exists():
        return
    try:
        with h5py.File(path, "r") as handle:
            ours = handle.attrs.get("source") == SYNTH_SOURCE
    except OSError:
        ours = False
    if not ours:
        raise FasdError(f"{path} exists and was not written by fasd synth; fasd will not overwrite it: "
                        f"choose another folder")


def synthesize(out_dir: Path, domains: int = 3, frames: int = DEFAULT_FRAMES, size: int = 112,
               seed: int = 0, progress: bool = True, modalities: Sequence[str] = ("rgb",)) -> Path:
    """Write ``OUT_DIR/<domain>.h5`` for each domain and ``OUT_DIR/fasd.toml``; return the toml's path.

    The same arguments give byte-identical image arrays, and the RGB images do not depend on
    ``modalities`` (depth and IR draw from their own random streams).
    """
    unknown = [name for name in modalities if name not in MODALITIES]
    if unknown or "rgb" not in modalities:
        raise FasdError(f"--modalities {','.join(modalities)}: choose among {', '.join(MODALITIES)}, rgb included")
    min_frames = len(SPLITS) * VIDEOS_PER_SUBJECT * FRAMES_PER_VIDEO
    if not 1 <= domains <= len(DOMAIN_NAMES):
        raise FasdError(f"--domains must be between 1 and {len(DOMAIN_NAMES)}, got {domains}")
    if frames < min_frames:
        raise FasdError(f"--frames must be at least {min_frames} (enough subjects for train, val and test), "
                        f"got {frames}")
    if size < MIN_SIZE:
        raise FasdError(f"--size must be at least {MIN_SIZE} pixels, got {size}")
    if seed < 0:
        raise FasdError(f"--seed must be a non-negative integer, got {seed}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(DOMAIN_NAMES[:domains])
    for name in names:
        _refuse_foreign_pack(out_dir / f"{name}.h5")
    extra = tuple(name for name in MODALITIES[1:] if name in modalities)
    with tqdm(total=domains * frames, desc="synth", unit="frame", disable=not progress) as bar:
        for index, name in enumerate(names):
            sensors = (sensor_style(index), extra, np.random.default_rng([seed, index, 1])) if extra else None
            _write_domain(out_dir / f"{name}.h5", name, domain_style(index), frames, size,
                          np.random.default_rng([seed, index]), bar, sensors)
    config = out_dir / "fasd.toml"
    write_config(config, {name: {"format": "hdf5", "path": f"{name}.h5"} for name in names}, names)
    return config


def _write_domain(path: Path, name: str, style: DomainStyle, frames: int, size: int,
                  rng: np.random.Generator, bar: tqdm,
                  sensors: tuple[SensorStyle, tuple[str, ...], np.random.Generator] | None = None) -> None:
    """Plan every frame, then render blocks on all cores (numpy releases the GIL) and append in order.

    ``sensors`` (the domain's depth/IR sensors, which of depth and ir to render, and their own random
    generator) adds depth and/or IR images; RGB draws only from ``rng``, so it is the same without them.
    """
    meta, params = _plan(name, style, frames, rng)
    blocks = [slice(start, min(start + BLOCK, frames)) for start in range(0, frames, BLOCK)]
    noise_seeds = rng.integers(2**63, size=len(blocks))  # a seed per block keeps threads deterministic
    grid = _Grid(size)
    extra: tuple[str, ...] = ()
    if sensors is not None:
        sensor, extra, sensor_rng = sensors
        sensor_params = _plan_sensors(sensor, params, frames, sensor_rng)
        sensor_seeds = sensor_rng.integers(2**63, size=(len(blocks), 2))  # depth's and IR's noise

    def render(index: int) -> dict[str, np.ndarray]:
        block = {key: value[blocks[index]] for key, value in params.items()}
        block_sensors = None if not extra else _Sensors(
            sensor, {key: value[blocks[index]] for key, value in sensor_params.items()},
            {name: np.random.default_rng(seed) for name, seed in zip(MODALITIES[1:], sensor_seeds[index])
             if name in extra})
        return _render(grid, style, block, np.random.default_rng(noise_seeds[index]), block_sensors)

    with (PackWriter(path, dataset=name, size=size, source=SYNTH_SOURCE, crop_policy="synthetic-centred",
                     modalities=("rgb", *extra)) as pack,
          ThreadPoolExecutor(max_workers=min(MAX_THREADS, os.cpu_count() or 1)) as pool):
        for block, frames_of in zip(blocks, pool.map(render, range(len(blocks)))):
            images = frames_of.pop("images")
            pack.append(images, **{key: value[block] for key, value in meta.items()}, **frames_of)
            bar.update(len(images))


# --------------------------------------------------------------------------------------------------
# Planning: who is in which video, which split, and every random parameter of every frame.


def _plan(name: str, style: DomainStyle, frames: int,
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
        "halftone_freq": angular(style.halftone_period), "halftone_angle": rng.uniform(0, np.pi / 2, n),
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


def _plan_sensors(style: SensorStyle, params: dict[str, np.ndarray], frames: int,
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


# --------------------------------------------------------------------------------------------------
# Rendering, vectorised over a block of frames: scene -> attack medium -> camera.
# Arrays are channel-first, (B, 3, H, W), single-channel maps (B, 1, H, W): numpy broadcasts per-frame
# colours over a contiguous last axis far faster than over a trailing axis of 3.


class _Grid:
    """Pixel-centre coordinates X (1, 1, 1, W) and Y (1, 1, H, 1) in [-1, 1]."""

    def __init__(self, size: int):
        axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
        self.X, self.Y = axis.reshape(1, 1, 1, size), axis.reshape(1, 1, size, 1)
        self.pixel = REFERENCE_SIZE / size  # reference pixels per pixel


def _col(values) -> np.ndarray:
    """Per-frame scalars (B,) -> (B, 1, 1, 1) and colours (B, 3) -> (B, 3, 1, 1)."""
    values = np.asarray(values, dtype=np.float32)
    return values.reshape(len(values), -1, 1, 1)


def _rgb(red: float, green: float, blue: float) -> np.ndarray:
    return np.array([red, green, blue], dtype=np.float32).reshape(3, 1, 1)


def _soft(distance: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased inside mask: 1 where distance >> 0, 0 where distance << 0."""
    mask = distance / width
    mask += 0.5
    return np.clip(mask, 0, 1, out=mask)


def _paint(image: np.ndarray, mask: np.ndarray, colour) -> np.ndarray:
    """Blend ``colour`` over ``image`` where ``mask`` is 1 (in place on a fresh array: page faults of new
    large arrays cost more than the arithmetic)."""
    blended = image - colour
    blended *= mask
    np.subtract(image, blended, out=blended)
    return blended


def _render(grid: _Grid, style: DomainStyle, p: dict[str, np.ndarray], rng: np.random.Generator,
            sensors: _Sensors | None = None) -> dict[str, np.ndarray]:
    """A block's uint8 (B, H, W, 3) frames: ``images`` (RGB) and, with ``sensors``, its depth and/or IR."""
    geometry = _Face.of(grid, p)
    scene = _scene(grid, p, geometry)
    luma = scene.mean(axis=1, keepdims=True) if sensors is not None else None  # what a print shows
    shown = np.flatnonzero(p["medium"])  # frames of a print or replay attack
    if len(shown):
        scene[shown] = _medium(grid, {k: v[shown] for k, v in p.items()}, scene[shown])
    frames = {"images": _camera(grid, style, p, scene, rng)}
    if sensors is not None:
        frames.update(sensors.render(grid, p, geometry, luma))
    return frames


def _background(grid: _Grid, p: dict, first: str, second: str) -> np.ndarray:
    """A two-colour gradient with soft blotches and, in some domains, fine wallpaper stripes."""
    angle = _col(p["bg_angle"])
    ramp = 0.5 + 0.5 * (grid.X * np.cos(angle) + grid.Y * np.sin(angle))
    texture = 1 + 0.12 * np.cos(_col(p["bg_wave_x"]) * grid.X + _col(p["bg_phase"])) * np.cos(
        _col(p["bg_wave_y"]) * grid.Y)
    wall = _col(p["wall_angle"])
    stripes = 1 + _col(p["wall_amp"]) * np.cos(
        _col(p["wall_freq"]) * (REFERENCE_SIZE / 2) * (grid.X * np.cos(wall) + grid.Y * np.sin(wall)))
    c0, c1 = _col(p[first]), _col(p[second])
    return (c0 + (c1 - c0) * ramp) * (texture * stripes)


FACE_EDGE = 0.06


@dataclass
class _Face:
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
    def of(cls, grid: _Grid, p: dict) -> "_Face":
        X, Y = grid.X, grid.Y
        cx, cy = _col(p["cx"] + p["jitter_x"]), _col(p["cy"] + p["jitter_y"])
        ax = _col(p["scale"] * p["scale_jitter"])
        ay = ax * _col(p["aspect"])
        roll = _col(p["roll"] + p["roll_jitter"])
        dx, dy = X - cx, Y - cy
        u = (dx * np.cos(roll) + dy * np.sin(roll)) / ax
        v = (-dx * np.sin(roll) + dy * np.cos(roll)) / ay
        radius = np.sqrt(u * u + v * v)
        body = _soft(Y - (cy + 1.05 * ay + 0.35 * dx * dx / ax), 0.03)
        neck = _soft(0.42 - np.abs(dx) / ax, FACE_EDGE) * _soft(Y - cy, 0.03) * (1 - body)
        hair = _soft(_col(p["hair_volume"]) - radius, FACE_EDGE) * _soft(0.25 - v, FACE_EDGE)
        face = _soft(1 - radius, FACE_EDGE * (1 - 0.7 * _col(p["is_mask"])))
        return cls(u, v, radius, body, neck, hair, face)


def _scene(grid: _Grid, p: dict, geometry: _Face) -> np.ndarray:
    """A face in front of a background: the live frame, the photo on a medium, or a masked face."""
    u, v = geometry.u, geometry.v
    skin, hair, is_mask = _col(p["skin"]), _col(p["hair"]), _col(p["is_mask"])
    image = _background(grid, p, "bg0", "bg1")

    image = _paint(image, geometry.body, _col(p["clothes"]))
    image = _paint(image, geometry.neck, skin * 0.8)
    image = _paint(image, geometry.hair, hair)

    # Skin: 3-D shading (flattened on a mask) and, on a mask, a plastic tint and a sharper edge.
    shade = 1 - (1 - 0.65 * is_mask) * (0.35 * u * u + 0.2 * np.clip(v, 0, None) ** 2)
    face_skin = (skin + is_mask * 0.5 * (_rgb(0.86, 0.76, 0.62) - skin)) * shade
    face = geometry.face
    image = _paint(image, face, face_skin)
    image = _paint(image, face * _soft(_col(p["hair_line"]) + 0.08 * np.cos(6 * u) - v, 0.05), hair)

    yaw = _col(p["yaw"])
    sclera = _col(0.92 - 0.7 * p["is_mask"])  # a mask's eye holes are dark
    eye, iris, (eu, ev, eye_w) = _eyes(p, u, v)
    image = _paint(image, eye, sclera)
    image = _paint(image, iris * (1 - is_mask), _col(p["iris"]))
    brow = _soft(1 - np.sqrt((eu / (1.2 * eye_w)) ** 2 + ((ev + 0.17) / 0.035) ** 2), 0.4)
    image = _paint(image, brow, hair * 0.8)
    nose = _soft(1 - np.sqrt(((u - 1.3 * yaw) / 0.07) ** 2 + ((v - 0.14) / 0.2) ** 2), 0.5)
    image = image * (1 - 0.15 * nose)
    mouth = np.sqrt(((u - yaw) / _col(p["mouth_w"])) ** 2
                    + ((v - _col(p["mouth_y"])) / _col(0.045 + 0.06 * p["mouth_open"])) ** 2)
    image = _paint(image, _soft(1 - mouth, 0.3), skin * _rgb(0.95, 0.55, 0.55))
    image = _paint(image, _soft(0.6 - mouth, 0.2) * _col(p["mouth_open"] > 0.25), _rgb(0.2, 0.06, 0.06))

    glare = _col(p["skin_glare"]) * np.exp(-((u + 0.2 * yaw) ** 2 + (v + 0.45) ** 2) / 0.03) * face
    return image + glare


def _eyes(p: dict, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Soft masks of both eyes and both irises, and the eye-relative coordinates (eu, ev) and eye width."""
    yaw = _col(p["yaw"])
    eye_w, eye_h = _col(p["eye_w"]), _col(p["eye_w"] * 0.55 * p["eye_open"])
    eu, ev = np.abs(u - yaw) - _col(p["eye_sep"]), v - _col(p["eye_y"])  # both eyes at once
    eye = _soft(1 - np.sqrt((eu / eye_w) ** 2 + (ev / eye_h) ** 2), 0.3)
    iris = _soft(0.55 - np.sqrt(eu * eu + ev * ev) / eye_w, 0.1) * _soft(1 - np.abs(ev) / eye_h, 0.3)
    return eye, iris, (eu, ev, eye_w)


def _medium(grid: _Grid, p: dict, photo: np.ndarray) -> np.ndarray:
    """The photo shown on paper or a screen and held in front of the camera in a real scene."""
    # Coordinates in the medium's own (slightly rotated) frame; its patterns use reference pixels.
    mu, mv = _medium_coordinates(grid, p)
    px, py = mu * (REFERENCE_SIZE / 2), mv * (REFERENCE_SIZE / 2)
    is_print, is_replay = _col(p["is_print"]), _col(p["is_replay"])

    shown = photo + is_print * 0.35 * (photo.mean(axis=1, keepdims=True) - photo)  # prints lose saturation
    lo, hi = _col(p["range_lo"]), _col(p["range_hi"])
    shown = (lo + (hi - lo) * np.clip(shown, 0, 1)) * (
        1 + is_print * (_rgb(1.0, 0.97, 0.9) - 1) + is_replay * (_rgb(0.94, 1.0, 1.08) - 1))

    theta, freq = _col(p["halftone_angle"]), _col(p["halftone_freq"])
    dots = 0.5 + 0.5 * (np.cos(freq * (px * np.cos(theta) + py * np.sin(theta)))
                        * np.cos(freq * (py * np.cos(theta) - px * np.sin(theta))))
    grid_freq = _col(p["grid_freq"])
    subpixels = 0.5 + 0.5 * np.cos(grid_freq * px - _rgb(0, 2 * np.pi / 3, 4 * np.pi / 3))
    rows = 0.5 + 0.5 * np.cos(grid_freq * py)
    tilt = _col(p["moire_angle"])
    bands = 0.5 + 0.5 * np.cos(_col(p["moire_freq"]) * (px * np.cos(tilt) + py * np.sin(tilt))
                               + 2.0 * np.sin(py / 9.0))
    shown = shown * ((1 - _col(p["halftone"]) * dots) * (1 - _col(p["moire"]) * bands)
                     * (1 - _col(p["grid"]) * 0.5 * (subpixels + rows)))
    shown = shown + _col(p["screen_glare"]) * np.exp(
        -((grid.X - _col(p["glare_x"])) ** 2 + (grid.Y - _col(p["glare_y"])) ** 2)
        / (2 * _col(p["glare_radius"]) ** 2))

    # The medium's rectangle (huge when its edge is out of view), its edge band, the scene around it.
    inside = _inside_medium(p, mu, mv)
    edge_colour = 0.05 + 0.87 * is_print  # white paper, black screen bezel
    framed = _paint(shown, _soft(_col(p["med_edge"]) - inside, 0.02), edge_colour)
    return _paint(_background(grid, p, "out0", "out1"), _soft(inside, 0.02), framed)


def _medium_coordinates(grid: _Grid, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """(mu, mv): coordinates in the held medium's own, slightly rotated, frame."""
    angle = _col(p["med_angle"])
    mx, my = grid.X - _col(p["med_x"] + p["shake_x"]), grid.Y - _col(p["med_y"] + p["shake_y"])
    return mx * np.cos(angle) + my * np.sin(angle), -mx * np.sin(angle) + my * np.cos(angle)


def _inside_medium(p: dict, mu: np.ndarray, mv: np.ndarray) -> np.ndarray:
    """Signed distance into the medium's rectangle (positive inside)."""
    return np.minimum(_col(p["med_half_x"]) - np.abs(mu), _col(p["med_half_y"]) - np.abs(mv))


def _camera(grid: _Grid, style: DomainStyle, p: dict, image: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """Light, optics, sensor and encoder of the domain's camera; returns uint8 (B, H, W, 3) frames."""
    light = _col(p["light_angle"])
    shading = _col(p["gain"]) * (1 + style.light_slope * (grid.X * np.cos(light) + grid.Y * np.sin(light)))
    image = image * shading * _rgb(*style.cast)
    image = np.clip(_gaussian_blur(image, p["blur"] / grid.pixel), 0, 1)
    image = image + style.noise * np.sqrt(image + 0.02) * rng.standard_normal(image.shape, dtype=np.float32)
    frames = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    return np.stack([_jpeg(frame, int(q)) for frame, q in zip(frames, p["quality"])])


def _gaussian_blur(image: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur of (B, C, H, W) with one sigma (pixels) per frame."""
    radius = max(1, math.ceil(3 * float(sigma.max())))
    taps = np.arange(-radius, radius + 1, dtype=np.float32)
    weights = np.exp(-0.5 * (taps / np.maximum(sigma, 1e-3).astype(np.float32)[:, None]) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    height, width = image.shape[2:]
    padded = np.pad(image, [(0, 0), (0, 0), (radius, radius), (0, 0)], mode="edge")
    image = sum(_col(weights[:, k]) * padded[:, :, k:k + height] for k in range(len(taps)))
    padded = np.pad(image, [(0, 0), (0, 0), (0, 0), (radius, radius)], mode="edge")
    return sum(_col(weights[:, k]) * padded[:, :, :, k:k + width] for k in range(len(taps)))


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


# --------------------------------------------------------------------------------------------------
# Depth and near-infrared: one closeness map per frame (the scene's 3-D shape), seen by each sensor.


@dataclass
class _Sensors:
    """A block's depth/IR rendering: the domain's sensors, the block's sensor parameters, and a noise
    generator for each modality to render (depth's and IR's are independent of each other)."""

    style: SensorStyle
    q: dict[str, np.ndarray]
    rngs: dict[str, np.random.Generator]

    def render(self, grid: _Grid, p: dict, geometry: _Face, luma: np.ndarray) -> dict[str, np.ndarray]:
        q, style = self.q, self.style
        mu, mv = _medium_coordinates(grid, p)
        medium = _col(p["medium"]) * _soft(_inside_medium(p, mu, mv), 0.02)  # 1 on a print or screen
        screen = medium * _col(p["is_replay"])
        wall = _col(q["wall_tilt"]) * (grid.X * np.cos(_col(q["wall_angle"])) + grid.Y * np.sin(_col(q["wall_angle"])))
        plane = (_col(q["med_z"]) + _col(q["tilt_x"]) * mu + _col(q["tilt_y"]) * mv
                 + _col(q["bend"]) * (1 - np.clip(mu, -1, 1) ** 2))
        person, dome = _person_closeness(p, q, geometry, wall)
        closeness = _paint(_paint(person, _col(p["medium"]), wall), medium, plane)
        frames = {}
        if "depth" in self.rngs:
            rng = self.rngs["depth"]
            depth = style.depth_offset + style.depth_gain * (closeness + _col(q["distance"]))
            depth = _gaussian_blur(depth, q["depth_blur"] / grid.pixel)
            depth += style.depth_noise * rng.standard_normal(depth.shape, dtype=np.float32)
            holes = style.depth_holes * (screen + (1 - _col(p["medium"])) * geometry.hair * (1 - geometry.face) / 3)
            frames["depth"] = _encode(np.where(rng.random(depth.shape) < holes, 0, depth), p)
        if "ir" in self.rngs:
            albedo = _ir_albedo(p, q, geometry, luma, medium, style.ink_ir)
            # Lambertian with the light at the camera: brightness follows the surface's facing, the
            # z-component of its normal; for the head's ellipsoid that is its dome, a plane's is its tilt.
            head = np.maximum(geometry.hair, geometry.face) * (1 - _col(p["medium"]))
            tilt = 1 / np.sqrt(1 + (IR_RELIEF * _col(q["tilt_x"])) ** 2 + (IR_RELIEF * _col(q["tilt_y"])) ** 2)
            facing = _paint(_paint(np.ones_like(closeness), head, 0.35 + 0.65 * dome), medium, tilt)
            light = np.clip(1 + style.ir_falloff * (closeness - 0.5), 0.1, None) * _col(q["ir_gain"])
            glint = screen * _col(q["glint"]) * np.exp(
                -((grid.X - _col(q["glint_x"])) ** 2 + (grid.Y - _col(q["glint_y"])) ** 2) / 0.02)
            ir = np.clip(style.ir_ambient + style.ir_gain * albedo * facing * light + glint, 0, 1) ** style.ir_gamma
            ir += style.ir_noise * self.rngs["ir"].standard_normal(ir.shape, dtype=np.float32)
            frames["ir"] = _encode(ir, p)
        return frames


IR_RELIEF = 3.0  # closeness units -> image half-widths, for the tilt of a held medium's normal


def _person_closeness(p: dict, q: dict, geometry: _Face, wall: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The live (or masked) person in front of the wall (torso, neck, a head with a face relief), and the
    head's dome (the z-component of its ellipsoid's normal)."""
    u, v, yaw = geometry.u, geometry.v, _col(p["yaw"])
    person = _col(q["person_z"])
    dome = np.sqrt(np.clip(1 - (geometry.radius / 1.15) ** 2, 0, None))
    nose = _col(q["nose"]) * np.exp(-(((u - 1.3 * yaw) / 0.12) ** 2 + ((v - 0.1) / 0.25) ** 2))
    sockets = _col(q["sockets"]) * np.exp(-(((np.abs(u - yaw) - _col(p["eye_sep"])) / 0.12) ** 2
                                             + ((v - _col(p["eye_y"])) / 0.08) ** 2))
    closeness = _paint(wall, geometry.body, person)
    closeness = _paint(closeness, geometry.neck, person + 0.05)
    head = np.maximum(geometry.hair, geometry.face)
    return _paint(closeness, head, person + 0.1 + _col(q["relief"]) * dome + nose - sockets), dome


def _ir_albedo(p: dict, q: dict, geometry: _Face, luma: np.ndarray, medium: np.ndarray,
               ink_ir: float) -> np.ndarray:
    """NIR reflectance: skin bright and tone-independent, mask material unlike skin, dark pupils; a
    print shows its picture faintly (as much as its ink absorbs NIR); a screen emits no NIR and is dark."""
    albedo = _paint(np.broadcast_to(_col(q["wall_ir"]), geometry.u.shape), geometry.body, _col(q["clothes_ir"]))
    albedo = _paint(albedo, geometry.neck, _col(q["skin_ir"]))
    albedo = _paint(albedo, geometry.hair, _col(q["hair_ir"]))
    albedo = _paint(albedo, geometry.face, _col(q["skin_ir"]))
    eye, iris, _ = _eyes(p, geometry.u, geometry.v)
    albedo = _paint(albedo, eye * geometry.face, 0.7)
    albedo = _paint(albedo, iris * geometry.face, 0.12)
    print_albedo = _col(q["paper_ir"]) * (1 - ink_ir * (1 - np.clip(luma, 0, 1)))
    shown = _col(p["is_print"]) * print_albedo + _col(p["is_replay"]) * _col(q["screen_ir"])
    return _paint(_paint(albedo, _col(p["medium"]), _col(q["wall_ir"])), medium, shown)


def _encode(image: np.ndarray, p: dict) -> np.ndarray:
    """(B, 1, H, W) in [0, 1] -> JPEG-compressed (B, H, W, 3) uint8, grey in all three channels."""
    frames = (np.clip(image[:, 0], 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.stack([_jpeg(frame, int(quality)) for frame, quality in zip(frames, p["quality"])])
