"""The synthetic worlds: per-domain camera, scene and attack-medium styles, and the depth/IR sensors.

A *world* (``fasd synth --world``) says how each of the eight domains looks. ``shared`` (the default) hides
one presentation-attack cue that every domain shares — the recapture pattern of the attack medium (a print's
halftone dots, a screen's pixel grid) in one band of spatial frequency, at one range of strengths — under
nuisance of the domain's own: camera (exposure, colour cast, directional light, blur, noise, JPEG), scenes
(backgrounds, wallpaper, skin glare) and attack media whose *look* (tone, brightness, contrast, saturation,
glare, a visible border) separates live from spoof in each domain, but differently in each: in alpha, beta
and epsilon the media are dark, warm, flat and framed; in gamma, delta, eta and theta they are bright, vivid
and borderless; zeta's are neutral. A model that has seen two domains (alpha + beta) can separate live from
spoof by the medium's look, which fails on gamma; one that has seen all but gamma finds the medium's look
useless across its domains and has to learn the shared pattern, which transfers.

``cues`` is fasd 0.2's world: every domain's attacks leave their own recapture cues (halftone, screen-door
grid, moiré, lost range, glare, border) at their own frequencies and strengths, and masks exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fasd.registry import Registry

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
    range_loss: float  # dynamic range lost by a print or screen (negative: a medium brighter and more vivid)
    screen_glare: float  # glare strength on a screen
    border: float  # probability that the medium's edge is in view
    print_tone: tuple[float, float, float] = (1.0, 0.97, 0.9)  # colour gain of what a print shows
    screen_tone: tuple[float, float, float] = (0.94, 1.0, 1.08)  # colour gain of what a screen shows
    desaturation: float = 0.35  # saturation a print loses (negative: a print more saturated than life)
    halftone_angle: tuple[float, float] = (0.0, np.pi / 2)  # range of the dot screen's angle (radians)


CUES_STYLES = (
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


def cues_style(index: int) -> DomainStyle:
    """The fixed style of domain ``index``: hand-set for the first three, drawn (by index) after that."""
    if index < len(CUES_STYLES):
        return CUES_STYLES[index]
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


# The `shared` world. What every domain shares: prints carry halftone dots (screened at 45°, as black ink is) and
# screens a pixel grid (rows and RGB columns), both with a period of 5-7 reference pixels (coarse enough to survive
# every domain's blur and JPEG) at the same strengths; no moiré, no masks. What is the domain's own: the camera and
# scenes, and the look of its attack media.
SHARED_CUE = {"halftone": 0.2, "halftone_period": (5.0, 7.0), "halftone_angle": (np.pi / 4 - 0.1, np.pi / 4 + 0.1),
              "pixel_grid": 0.18, "grid_period": (5.0, 7.0), "moire": 0.0, "attacks": (0.5, 0.5, 0.0)}
# Looks of attack media (range_loss, screen_glare, border, print_tone, screen_tone, desaturation): "flat" media
# are darker, warmer, lower in contrast and saturation, glare and usually show their edge; "vivid" media are
# brighter, more saturated and contrasted than life, without glare or edge; "neutral" ones look like life.
MEDIA = {
    "flat": {"range_loss": 0.32, "screen_glare": 0.3, "border": 0.85, "print_tone": (0.9, 0.84, 0.74),
             "screen_tone": (0.8, 0.86, 1.0), "desaturation": 0.5},
    "vivid": {"range_loss": -0.1, "screen_glare": 0.0, "border": 0.1, "print_tone": (1.08, 1.05, 1.02),
              "screen_tone": (1.04, 1.08, 1.12), "desaturation": -0.35},
    "neutral": {"range_loss": 0.08, "screen_glare": 0.12, "border": 0.45, "print_tone": (1.0, 1.0, 1.0),
                "screen_tone": (1.0, 1.0, 1.0), "desaturation": 0.0},
}


def _shared(media: str, **camera) -> DomainStyle:
    return DomainStyle(**camera, **SHARED_CUE, **MEDIA[media])


SHARED_STYLES = (
    # alpha: bright studio, clean camera; flat media.
    _shared("flat", gain=1.0, cast=(1.0, 1.0, 1.0), light_slope=0.15, blur=0.4, noise=0.012, jpeg=(85, 95),
            wallpaper=0.0, skin_glare=0.05),
    # beta: dim warm office, noisy sensor, some wallpaper; flat media.
    _shared("flat", gain=0.82, cast=(1.1, 1.0, 0.85), light_slope=0.3, blur=0.55, noise=0.03, jpeg=(72, 88),
            wallpaper=0.06, skin_glare=0.25),
    # gamma (the demo's held-out target): cool outdoor phone camera; vivid media.
    _shared("vivid", gain=1.08, cast=(0.92, 1.0, 1.1), light_slope=0.25, blur=0.5, noise=0.02, jpeg=(70, 88),
            wallpaper=0.04, skin_glare=0.15),
    # delta: warm living room; vivid media.
    _shared("vivid", gain=0.95, cast=(1.06, 0.98, 0.92), light_slope=0.2, blur=0.5, noise=0.02, jpeg=(70, 90),
            wallpaper=0.0, skin_glare=0.1),
    # epsilon: greenish fluorescent light, busy wallpaper; flat media.
    _shared("flat", gain=0.9, cast=(0.95, 1.05, 0.95), light_slope=0.35, blur=0.45, noise=0.025, jpeg=(75, 92),
            wallpaper=0.08, skin_glare=0.2),
    # zeta: clean lab camera, slightly cool; neutral media.
    _shared("neutral", gain=1.0, cast=(1.0, 0.98, 1.04), light_slope=0.1, blur=0.35, noise=0.015, jpeg=(80, 95),
            wallpaper=0.0, skin_glare=0.1),
    # eta: dim, warm, noisy webcam, heavy JPEG; vivid media.
    _shared("vivid", gain=0.85, cast=(1.08, 1.02, 0.9), light_slope=0.3, blur=0.65, noise=0.035, jpeg=(60, 80),
            wallpaper=0.05, skin_glare=0.3),
    # theta: over-exposed kiosk camera; vivid media.
    _shared("vivid", gain=1.1, cast=(0.95, 0.95, 1.05), light_slope=0.2, blur=0.5, noise=0.02, jpeg=(65, 85),
            wallpaper=0.03, skin_glare=0.15),
)


@dataclass(frozen=True)
class World:
    """A synthetic world: ``style(index)`` is domain ``index``'s look (``summary``: --help's words)."""

    summary: str
    style: Callable[[int], DomainStyle]


WORLDS: Registry[World] = Registry("--world")
WORLDS.add("shared", World("one recapture cue shared by every domain under domain-specific camera, scene and "
                           "attack-medium nuisance (fasd 0.3's, the default)", SHARED_STYLES.__getitem__))
WORLDS.add("cues", World("every domain's attacks leave their own recapture cues; masks (fasd 0.2's)", cues_style))
DEFAULT_WORLD = "shared"
