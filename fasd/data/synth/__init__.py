"""Synthetic cross-domain face anti-spoofing benchmark (``fasd synth``).

Each domain is one "dataset": its own subjects, scenes and camera, written as an HDF5 frame pack.
Domains are named, in order, alpha, beta, gamma, delta, epsilon, zeta, eta, theta; with the default
three domains the protocols are holdout-alpha, holdout-beta and holdout-gamma. How the domains look is the
*world* (``--world``, fasd.data.synth.domains): by default one presentation-attack cue shared by every domain
under nuisance of each domain's own.

Every subject (a cartoon face with its own skin, hair, eyes, mouth and clothes) has one live video and
two attack videos (print, replay or, in the ``cues`` world, mask) of FRAMES_PER_VIDEO frames each, so a
third of the frames are live. Splits are drawn by subject, so no subject, and hence no video, is in two
splits.

With ``modalities`` including depth and/or ir, each frame also gets a depth and a near-infrared image
(3-channel grey, as the MMDG lists store them) rendered from one 3-D scene: a live face (and a worn 3-D
mask) has a curved relief in front of the wall, a print or screen is a tilted plane (paper slightly
bent; a glossy screen loses depth pixels). In IR the camera's own illuminator lights the scene: skin
is bright whatever its visible tone, mask materials reflect unlike skin, a print shows its picture as
faintly as its ink absorbs NIR, and a screen, which emits no NIR, is dark but for a glint. Each domain
has its own depth sensor (offset, gain, noise, holes, blur) and IR sensor (gain, response curve,
ambient sunlight, noise, fall-off, ink), so the cues transfer across domains imperfectly. Depth and IR
draw from their own random streams: the RGB images are the same with or without them.

Modules: domains (worlds, styles, sensors, layout constants), plan (per-frame parameters), scene (background
and person), attacks (print/screen media), sensors (depth, IR), raster (primitives, camera optics), render
(one block of frames), writer (``synthesize``).
"""

from fasd.data.synth.domains import (DEFAULT_FRAMES, DEFAULT_WORLD, DOMAIN_NAMES, FRAMES_PER_VIDEO, SYNTH_SOURCE,
                                     WORLDS, DomainStyle)
from fasd.data.synth.writer import synthesize

__all__ = ["DEFAULT_FRAMES", "DEFAULT_WORLD", "DOMAIN_NAMES", "FRAMES_PER_VIDEO", "SYNTH_SOURCE", "WORLDS",
           "DomainStyle", "synthesize"]
