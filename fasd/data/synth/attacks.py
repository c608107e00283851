"""Presentation-attack media: the live scene's photo shown on paper or a screen held in front of the camera."""

from __future__ import annotations

import numpy as np

from fasd.data.synth.domains import REFERENCE_SIZE, DomainStyle
from fasd.data.synth.raster import Grid, col, paint, rgb, soft
from fasd.data.synth.scene import background

def show_on_medium(grid: Grid, style: DomainStyle, p: dict, photo: np.ndarray) -> np.ndarray:
    """The photo shown on paper or a screen and held in front of the camera in a real scene."""
    # Coordinates in the medium's own (slightly rotated) frame; its patterns use reference pixels.
    mu, mv = medium_coordinates(grid, p)
    px, py = mu * (REFERENCE_SIZE / 2), mv * (REFERENCE_SIZE / 2)
    is_print, is_replay = col(p["is_print"]), col(p["is_replay"])

    shown = photo + is_print * style.desaturation * (photo.mean(axis=1, keepdims=True) - photo)
    lo, hi = col(p["range_lo"]), col(p["range_hi"])
    shown = (lo + (hi - lo) * np.clip(shown, 0, 1)) * (
        1 + is_print * (rgb(*style.print_tone) - 1) + is_replay * (rgb(*style.screen_tone) - 1))

    theta, freq = col(p["halftone_angle"]), col(p["halftone_freq"])
    dots = 0.5 + 0.5 * (np.cos(freq * (px * np.cos(theta) + py * np.sin(theta)))
                        * np.cos(freq * (py * np.cos(theta) - px * np.sin(theta))))
    grid_freq = col(p["grid_freq"])
    subpixels = 0.5 + 0.5 * np.cos(grid_freq * px - rgb(0, 2 * np.pi / 3, 4 * np.pi / 3))
    rows = 0.5 + 0.5 * np.cos(grid_freq * py)
    tilt = col(p["moire_angle"])
    bands = 0.5 + 0.5 * np.cos(col(p["moire_freq"]) * (px * np.cos(tilt) + py * np.sin(tilt))
                               + 2.0 * np.sin(py / 9.0))
    shown = shown * ((1 - col(p["halftone"]) * dots) * (1 - col(p["moire"]) * bands)
                     * (1 - col(p["grid"]) * 0.5 * (subpixels + rows)))
    shown = shown + col(p["screen_glare"]) * np.exp(
        -((grid.X - col(p["glare_x"])) ** 2 + (grid.Y - col(p["glare_y"])) ** 2)
        / (2 * col(p["glare_radius"]) ** 2))

    # The medium's rectangle (huge when its edge is out of view), its edge band, the scene around it.
    inside = inside_medium(p, mu, mv)
    edge_colour = 0.05 + 0.87 * is_print  # white paper, black screen bezel
    framed = paint(shown, soft(col(p["med_edge"]) - inside, 0.02), edge_colour)
    return paint(background(grid, p, "out0", "out1"), soft(inside, 0.02), framed)


def medium_coordinates(grid: Grid, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """(mu, mv): coordinates in the held medium's own, slightly rotated, frame."""
    angle = col(p["med_angle"])
    mx, my = grid.X - col(p["med_x"] + p["shake_x"]), grid.Y - col(p["med_y"] + p["shake_y"])
    return mx * np.cos(angle) + my * np.sin(angle), -mx * np.sin(angle) + my * np.cos(angle)


def inside_medium(p: dict, mu: np.ndarray, mv: np.ndarray) -> np.ndarray:
    """Signed distance into the medium's rectangle (positive inside)."""
    return np.minimum(col(p["med_half_x"]) - np.abs(mu), col(p["med_half_y"]) - np.abs(mv))


