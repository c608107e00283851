"""Real photos for the face tests (scikit-image ships them: nothing is fetched), stored the way phones store them,
and a folder in ``fasd ingest faces``'s layout built from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

import ingest_fixtures as fx

EXIF_ORIENTATION = 274
# EXIF orientation -> np.rot90 turns (counter-clockwise) that make the stored pixels of an upright picture
STORED_TURNS = {3: 2, 6: 1, 8: 3}
VIDEO_SIDE = 256


def astronaut() -> np.ndarray:
    return data.astronaut()


def save_rotated(path: Path, image: np.ndarray, orientation: int = 6) -> Path:
    """``image`` stored rotated with the EXIF orientation tag that turns it upright again (as phones do), JPEG."""
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(image, STORED_TURNS[orientation])))
    exif = stored.getexif()
    exif[EXIF_ORIENTATION] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    stored.save(path, exif=exif, quality=95)
    return path


def small(image: np.ndarray, side: int = VIDEO_SIDE) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BICUBIC))


def build_faces_root(root: Path) -> Path:
    """train: the astronaut stored rotated (EXIF 6), live, and upright, spoof/print; val: a live astronaut;
    test: a video (3 frames with the astronaut, 2 blank), the cat (no face), a broken JPEG, a text file."""
    save_rotated(root / "train" / "live" / "astronaut.jpg", astronaut())
    (root / "train" / "spoof" / "print").mkdir(parents=True)
    Image.fromarray(astronaut()).save(root / "train" / "spoof" / "print" / "upright.png")
    (root / "val" / "live").mkdir(parents=True)
    Image.fromarray(small(astronaut(), 384)).save(root / "val" / "live" / "smaller.png")
    blank = np.full((VIDEO_SIDE, VIDEO_SIDE, 3), 128, np.uint8)
    fx.write_video(root / "test" / "live" / "clip.avi", [small(astronaut())] * 3 + [blank] * 2)
    (root / "test" / "spoof" / "replay").mkdir(parents=True)
    Image.fromarray(data.chelsea()).save(root / "test" / "spoof" / "replay" / "cat.jpg")
    (root / "test" / "spoof" / "replay" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (root / "notes.txt").write_text("not media")
    return root
