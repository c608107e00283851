"""Face detectors, registered by name (``--detector``): one embedded in OpenCV and two from user-named weights.

- ``haar`` (default): OpenCV's frontal-face Haar cascade, shipped inside the opencv-python-headless 4.x wheel
  (``cv2.data.haarcascades``): nothing to download, no landmarks. OpenCV 5 dropped the cascades (fasd pins < 5).
- ``yunet``: OpenCV's ``FaceDetectorYN`` on a YuNet ONNX file (face_detection_yunet_2023mar.onnx from the
  OpenCV Zoo); boxes, scores and five landmarks (eyes, nose tip, mouth corners).
- ``retinaface``: the Caffe RetinaFace that Silent-Face-Anti-Spoofing ships (``Widerface-RetinaFace.caffemodel``
  with its ``deploy.prototxt``), run by OpenCV's Caffe importer as Silent-Face runs it; boxes and scores.

Every detector sees an RGB uint8 frame and returns ``Face`` boxes in that frame's pixels. Loading one parses
an XML cascade, an ONNX graph or Caffe protobufs: nothing is ever unpickled.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from fasd.errors import FasdError
from fasd.export.metadata import first_line
from fasd.faces.crop import Face, crop_face, largest
from fasd.faces.policy import CropPolicy
from fasd.registry import Registry

DETECT_SIDE = 800  # frames are shrunk to at most this long side before detection (phone photos are 4000 px)
HAAR_CASCADE = "haarcascade_frontalface_default.xml"
HAAR_MIN_FACE = 24  # pixels of the shrunk frame (the cascade's own window)
HAAR_MIN_SCORE = 1.0  # the cascade's last-stage weight: real faces score about 5-8, stray textures below 1
SCORE_THRESHOLD = 0.6  # YuNet and RetinaFace: detections below this confidence are not faces
YUNET_NMS, YUNET_TOP_K = 0.3, 5000  # the OpenCV Zoo demo's settings
RETINAFACE_AREA = 192 * 192  # Silent-Face resizes larger frames to about this many pixels before detection
RETINAFACE_MEAN = (104, 117, 123)  # BGR mean Silent-Face subtracts
RETINAFACE_PROTOTXT = "deploy.prototxt"  # looked for beside the .caffemodel when not named


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[Face]:
        """Every face in the RGB uint8 ``image``, boxes in its pixels."""


@dataclass(frozen=True)
class DetectorKind:
    name: str
    build: Callable[[tuple[Path, ...]], Detector]
    weights: str  # what --detector-weights takes; "" for an embedded detector
    landmarks: bool  # gives eye landmarks (a policy's align_eyes uses them)
    help: str


DETECTORS: Registry[DetectorKind] = Registry("--detector", unknown="unknown {flag} '{name}'; registered: {names}")


def register_detector(name: str, weights: str, landmarks: bool, help: str):
    return DETECTORS.register(name, lambda build: DetectorKind(name, build, weights, landmarks, help))


def detectors_help() -> str:
    """Every registered detector, what it is and what it reads (for --detector's help)."""
    return "; ".join(f"{name}: {kind.help}" + (f" (--detector-weights: {kind.weights})" if kind.weights else "")
                     for name, kind in DETECTORS.all().items())


@lru_cache(maxsize=4)  # one per process and weights: ingest workers load it once, not per item
def load_detector(name: str, weights: str | None = None) -> Detector:
    """The registered detector ``name`` built from ``weights`` (comma-separated files, as --detector-weights)."""
    kind = DETECTORS.get(name)
    paths = tuple(Path(part.strip()) for part in str(weights or "").split(",") if part.strip())
    if kind.weights and not paths:
        raise FasdError(f"--detector {name} needs --detector-weights: {kind.weights}")
    if not kind.weights and paths:
        raise FasdError(f"--detector {name} is embedded in OpenCV and takes no --detector-weights; "
                        f"drop it or pick a detector that reads weights ({_weighted()})")
    for path in paths:
        if not path.is_file():
            raise FasdError(f"--detector-weights {path}: file not found")
    return kind.build(paths)


def _weighted() -> str:
    return ", ".join(name for name, kind in DETECTORS.all().items() if kind.weights)


@contextmanager
def _native_stderr_quiet() -> Iterator[None]:
    """OpenCV's protobuf parser prints its own error lines on file descriptor 2; keep them out of the terminal
    (the FasdError raised instead says what is wrong in one line)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _Shrinking:
    """Detection on the frame shrunk to DETECT_SIDE (faster on phone photos; boxes mapped back to full size)."""

    def detect(self, image: np.ndarray) -> list[Face]:
        height, width = image.shape[:2]
        factor = min(1.0, DETECT_SIDE / max(height, width))
        if factor < 1.0:
            image = cv2.resize(image, (max(1, round(width * factor)), max(1, round(height * factor))),
                               interpolation=cv2.INTER_AREA)
        faces = self._detect(np.ascontiguousarray(image))
        if factor == 1.0:
            return faces
        return [Face(tuple(v / factor for v in face.box), face.score,
                     None if face.landmarks is None else tuple((x / factor, y / factor) for x, y in face.landmarks))
                for face in faces]

    def _detect(self, image: np.ndarray) -> list[Face]:
        raise NotImplementedError


@register_detector("haar", weights="", landmarks=False,
                   help="OpenCV's frontal-face Haar cascade, inside opencv-python-headless (no download)")
class HaarDetector(_Shrinking):
    def __init__(self, paths: tuple[Path, ...] = ()) -> None:
        path = Path(cv2.data.haarcascades) / HAAR_CASCADE
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise FasdError(f"OpenCV's Haar cascade {path} is missing: install opencv-python-headless 4.x "
                            "(pip install 'opencv-python-headless>=4.8,<5'; OpenCV 5 dropped the cascades)")

    def _detect(self, image: np.ndarray) -> list[Face]:
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        boxes, _, weights = self._cascade.detectMultiScale3(gray, scaleFactor=1.1, minNeighbors=5,
                                                            minSize=(HAAR_MIN_FACE, HAAR_MIN_FACE),
                                                            outputRejectLevels=True)
        return [Face(tuple(float(v) for v in box), float(weight)) for box, weight in zip(boxes, np.ravel(weights))
                if weight >= HAAR_MIN_SCORE]


@register_detector("yunet", weights="a YuNet .onnx file (face_detection_yunet_2023mar.onnx, OpenCV Zoo)",
                   landmarks=True, help="YuNet via OpenCV's FaceDetectorYN, boxes + 5 landmarks")
class YuNetDetector(_Shrinking):
    def __init__(self, paths: tuple[Path, ...]) -> None:
        if len(paths) != 1:
            raise FasdError(f"--detector yunet takes one --detector-weights file (the YuNet .onnx), got {len(paths)}")
        path = paths[0]
        try:
            with _native_stderr_quiet():
                self._net = cv2.FaceDetectorYN.create("onnx", np.fromfile(path, dtype=np.uint8),
                                                      np.zeros(0, dtype=np.uint8), (64, 64), SCORE_THRESHOLD,
                                                      YUNET_NMS, YUNET_TOP_K)
                self._detect(np.zeros((64, 64, 3), dtype=np.uint8))  # a graph that is not YuNet fails here
        except cv2.error as exc:
            raise FasdError(f"--detector-weights {path} is not a YuNet ONNX model ({_cv_reason(exc)}); pass "
                            "face_detection_yunet_2023mar.onnx from the OpenCV Zoo") from None

    def _detect(self, image: np.ndarray) -> list[Face]:
        height, width = image.shape[:2]
        self._net.setInputSize((width, height))
        _, rows = self._net.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return [Face(tuple(float(v) for v in row[:4]), float(row[14]),
                     tuple((float(row[4 + 2 * i]), float(row[5 + 2 * i])) for i in range(5)))
                for row in (() if rows is None else rows)]


@register_detector("retinaface", weights=f"the Caffe .caffemodel with its {RETINAFACE_PROTOTXT} beside it, or "
                                         "MODEL.caffemodel,deploy.prototxt (Silent-Face-Anti-Spoofing's "
                                         "resources/detection_model/)",
                   landmarks=False, help="Silent-Face's Caffe RetinaFace via OpenCV's Caffe importer")
class RetinaFaceDetector(_Shrinking):
    def __init__(self, paths: tuple[Path, ...]) -> None:
        model, prototxt = _caffe_pair(paths)
        try:
            with _native_stderr_quiet():
                self._net = cv2.dnn.readNetFromCaffe(str(prototxt), str(model))
                out = self._forward(np.zeros((64, 64, 3), dtype=np.uint8))
        except cv2.error as exc:
            raise FasdError(f"--detector-weights {model},{prototxt} is not a Caffe RetinaFace "
                            f"({_cv_reason(exc)}); pass Silent-Face's Widerface-RetinaFace.caffemodel and "
                            "deploy.prototxt") from None
        if out.ndim != 2 or out.shape[1] != 7:
            raise FasdError(f"--detector-weights {model},{prototxt}: its detection_out gives {tuple(out.shape)}, "
                            "not SSD detections (N x 7); pass Silent-Face's RetinaFace")

    def _forward(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        if height * width > RETINAFACE_AREA:  # as Silent-Face: about 192 x 192 pixels, the aspect kept
            ratio = math.sqrt(width / height)
            image = cv2.resize(image, (int(192 * ratio), int(192 / ratio)), interpolation=cv2.INTER_LINEAR)
        blob = cv2.dnn.blobFromImage(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), 1.0, mean=RETINAFACE_MEAN)
        self._net.setInput(blob, "data")
        out = np.asarray(self._net.forward("detection_out"))
        return out.reshape(-1, out.shape[-1]) if out.ndim else out

    def _detect(self, image: np.ndarray) -> list[Face]:
        height, width = image.shape[:2]
        faces = []
        for _, _, score, x1, y1, x2, y2 in self._forward(image):
            if score >= SCORE_THRESHOLD and x2 > x1 and y2 > y1:
                faces.append(Face((float(x1 * width), float(y1 * height), float((x2 - x1) * width),
                                   float((y2 - y1) * height)), float(score)))
        return faces


def _caffe_pair(paths: tuple[Path, ...]) -> tuple[Path, Path]:
    """(caffemodel, prototxt) from one or two --detector-weights files; the prototxt is the text one."""
    texts = [path for path in paths if path.suffix.lower() in (".prototxt", ".txt")]
    models = [path for path in paths if path not in texts]
    if len(paths) == 1 and models:
        prototxt = models[0].with_name(RETINAFACE_PROTOTXT)
        if not prototxt.is_file():
            raise FasdError(f"--detector retinaface: no {RETINAFACE_PROTOTXT} beside {models[0]}; pass "
                            f"--detector-weights {models[0]},PATH/deploy.prototxt")
        return models[0], prototxt
    if len(models) != 1 or len(texts) != 1:
        raise FasdError("--detector retinaface takes --detector-weights MODEL.caffemodel[,deploy.prototxt] "
                        f"(one model, one .prototxt), got {', '.join(map(str, paths))}")
    return models[0], texts[0]


def _cv_reason(exc: cv2.error) -> str:
    """OpenCV's reason without its source location ('OpenCV(4.x) file.cpp:12: error: (-2:...) reason in function f')."""
    text = first_line(exc)
    match = _CV_ERROR.search(text)
    return match[1].strip() if match else text


_CV_ERROR = re.compile(r"error: \([^)]*\) (.*?)(?: in function .*)?$")


@dataclass(frozen=True)
class Found:
    """What detection gave on one frame: the face used (the largest), how many there were, and its crop."""

    face: Face | None
    count: int
    crop: np.ndarray | None  # uint8 size x size x 3 by the policy; None without a face


def find_face(image: np.ndarray, detector: Detector, policy: CropPolicy) -> Found:
    """Detect in the upright RGB ``image``, keep the largest face and crop it by ``policy``; no face: no crop
    (never a crop of the frame centre)."""
    faces = detector.detect(image)
    face = largest(faces)
    return Found(face, len(faces), None if face is None else crop_face(image, face, policy))
