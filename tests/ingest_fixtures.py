"""Builders of tiny look-alikes of the native dataset layouts that ``fasd ingest`` reads.

Frames are dark grey with bright square markers drawn where the face annotation points, so a test
can check where a crop landed. Videos are 8 frames of 64 x 48 (mpeg4 in .avi / .mov).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fasd.data.ingest.celeba import is_val_subject

WIDTH, HEIGHT, FRAMES = 64, 48, 8
BACKGROUND = 30
MARKER_HALF = 3

# OULU: level eyes 12 px apart, "right" eye (subject's right) on the image left.
OULU_EYES = ((26, 20), (38, 20))
# The roll-aligned crop centre for OULU_EYES: midpoint + 0.35 * 12 px below the eye line.
OULU_CENTRE = (32, 24)
# Tilted eyes (26.6 degrees) for the roll-alignment test, given left-labelled first on purpose.
OULU_TILTED_EYES = ((40, 26), (24, 18))
REPLAY_BOX = (20, 12, 16, 16)  # x, y, w, h: centre (28, 20)
FAR_MARKER = (58, 42)  # outside every crop


def marker_image(centres: Sequence[tuple[float, float]], width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    image = np.full((height, width, 3), BACKGROUND, np.uint8)
    for x, y in centres:
        x, y = round(x), round(y)
        image[max(0, y - MARKER_HALF):y + MARKER_HALF + 1, max(0, x - MARKER_HALF):x + MARKER_HALF + 1] = 255
    return image


def write_video(path: Path, frames: Sequence[np.ndarray]) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def _oulu_video(folder: Path, name: str, eyes, annotated: Sequence[int] = range(FRAMES), markers=None) -> None:
    """A video whose frames show markers (default: at the crop centre and far away), and its eye file."""
    frame = marker_image(markers if markers is not None else (OULU_CENTRE, FAR_MARKER))
    write_video(folder / f"{name}.avi", [frame] * FRAMES)
    (right_x, right_y), (left_x, left_y) = eyes
    write_lines(folder / f"{name}.txt", [f"{i}, {right_x}, {right_y}, {left_x}, {left_y}" if i in annotated
                                         else f"{i}, 0, 0, 0, 0" for i in range(FRAMES)])


def build_oulu(root: Path) -> Path:
    """Train: 1_1_01_1 (live), 1_1_01_2 (print, frames 2-7 annotated), 1_2_01_1 (live, only in Protocol_3/1).
    Dev: 1_1_21_4 (replay, tilted eyes with markers on them). Test: 1_1_36_1 (live), 1_1_36_5 (no eye
    file), 1_1_37_3 (corrupt video)."""
    train, dev, test = root / "Train_files", root / "Dev_files", root / "Test_files"
    _oulu_video(train, "1_1_01_1", OULU_EYES)
    _oulu_video(train, "1_1_01_2", OULU_EYES, annotated=range(2, FRAMES))
    _oulu_video(train, "1_2_01_1", OULU_EYES)
    _oulu_video(dev, "1_1_21_4", OULU_TILTED_EYES, markers=OULU_TILTED_EYES)
    _oulu_video(test, "1_1_36_1", OULU_EYES)
    write_video(test / "1_1_36_5.avi", [marker_image([OULU_CENTRE])] * FRAMES)
    (test / "1_1_37_3.avi").write_bytes(b"not a video" * 20)
    (test / "1_1_37_3.txt").write_text("0, 26, 20, 38, 20\n")
    protocols = root / "Protocols"
    write_lines(protocols / "Protocol_1" / "Train.txt", ["+1,1_1_01_1", "-1,1_1_01_2"])
    write_lines(protocols / "Protocol_1" / "Dev.txt", ["-2,1_1_21_4"])
    write_lines(protocols / "Protocol_1" / "Test.txt", ["+1,1_1_36_1"])
    write_lines(protocols / "Protocol_3" / "Train_1.txt", ["+1,1_2_01_1"])
    write_lines(protocols / "Protocol_3" / "Dev_1.txt", ["-2,1_1_21_4"])
    write_lines(protocols / "Protocol_3" / "Test_1.txt", ["+1,1_1_36_1", "-2,1_1_36_5", "-1,1_1_36_2"])
    return root


REPLAY_REAL = "train/real/client001_session01_webcam_authenticate_adverse_1"
REPLAY_ENROLL = "train/real/client001_session01_webcam_enroll_controlled_1"
REPLAY_HIGHDEF = "train/attack/fixed/attack_highdef_client001_session01_highdef_photo_adverse"
REPLAY_MOBILE = "devel/attack/hand/attack_mobile_client002_session01_mobile_video_controlled"
REPLAY_NO_BOXES = "test/attack/hand/attack_print_client003_session01_highdef_photo_controlled"
REPLAY_FACELESS = "test/real/client003_session01_webcam_authenticate_controlled_1"


def build_replay(root: Path) -> Path:
    """Real video with faces in frames 2-7, enroll video, two attacks, one without .face file,
    one whose boxes are all zero."""
    x, y, w, h = REPLAY_BOX
    frame = marker_image([(x + w / 2, y + h / 2), FAR_MARKER])
    for name in (REPLAY_REAL, REPLAY_ENROLL, REPLAY_HIGHDEF, REPLAY_MOBILE, REPLAY_NO_BOXES, REPLAY_FACELESS):
        write_video(root / f"{name}.mov", [frame] * FRAMES)
    face = f"{x} {y} {w} {h}"
    faces = root / "face-locations"
    write_lines(faces / f"{REPLAY_REAL}.face", [f"{i} {face if i >= 2 else '0 0 0 0'}" for i in range(FRAMES)])
    for name in (REPLAY_ENROLL, REPLAY_HIGHDEF, REPLAY_MOBILE):
        write_lines(faces / f"{name}.face", [f"{i} {face}" for i in range(FRAMES)])
    write_lines(faces / f"{REPLAY_FACELESS}.face", [f"{i} 0 0 0 0" for i in range(FRAMES)])
    return root


CELEBA_SIZE = (112, 56)  # width, height: the 224 reference frame scales x by 2 and y by 4
CELEBA_BOX = (50, 20, 16, 16)  # in image pixels; centre (58, 28)


def celeba_subjects() -> tuple[str, str]:
    """A train subject that stays in train and one that the deterministic carve puts in val."""
    ids = [str(n) for n in range(1000, 1200)]
    return next(s for s in ids if not is_val_subject(s)), next(s for s in ids if is_val_subject(s))


def _celeba_entry(spoof_type: int) -> list[int]:
    return [0] * 40 + [spoof_type, 0, 0, int(spoof_type > 0)]


def build_celeba(root: Path) -> dict[str, list[int]]:
    """Five listed images (one without a box file, one missing on disk); returns the train+test labels."""
    train_subject, val_subject = celeba_subjects()
    x, y, w, h = CELEBA_BOX
    sx, sy = 224 / CELEBA_SIZE[0], 224 / CELEBA_SIZE[1]
    image = marker_image([(x + w / 2, y + h / 2), (4, 4)], *CELEBA_SIZE)
    train = {f"Data/train/{train_subject}/live/000001.png": _celeba_entry(0),
             f"Data/train/{train_subject}/spoof/000002.png": _celeba_entry(3),
             f"Data/train/{val_subject}/spoof/000003.png": _celeba_entry(9)}
    test = {"Data/test/5000/live/000004.png": _celeba_entry(0),
            "Data/test/5000/spoof/000005.png": _celeba_entry(10),
            "Data/test/5000/spoof/000006.png": _celeba_entry(1)}
    for relative in [*train, *test][:5]:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        if not relative.endswith("000005.png"):
            path.with_name(f"{path.stem}_BB.txt").write_text(f"{x * sx:g} {y * sy:g} {w * sx:g} {h * sy:g} 0.99\n")
    metas = root / "metas" / "intra_test"
    metas.mkdir(parents=True)
    (metas / "train_label.json").write_text(json.dumps(train))
    (metas / "test_label.json").write_text(json.dumps(test))
    return {**train, **test}


def build_mcio(root: Path) -> Path:
    """train: 2 real frames of one video, 1 fake; test: 1 real (non-square, 48 x 32), 1 fake, 1 corrupt fake."""
    square = marker_image([(20, 20)], 40, 40)
    files = {"train/real/casia_v1_frame0.png": square, "train/real/casia_v1_frame1.png": square,
             "train/fake/casia_v2_frame0.png": square,
             "test/real/idiap_v3_frame0.jpg": marker_image([(24, 16)], 48, 32),
             "test/fake/idiap_v4_frame0.png": square}
    for relative, image in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / relative)
    (root / "test/fake/idiap_v5_frame0.png").write_bytes(b"not a png")
    return root
