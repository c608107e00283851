"""Score frames with any student (in-memory PyTorch, checkpoint or ONNX) and turn scores into metrics."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from fasd.constants import CLASS_NAMES, STUDENT_INPUT_SIZE
from fasd.data.source import FrameSource
from fasd.errors import FasdError, listed, warn
from fasd.evaluate.metrics import compute_metrics, video_level
from fasd.training.frames import EvalFrames
from fasd.training.modalities import ModalityEvalFrames, check_missing, modality_eval_transform
from fasd.training.transforms import eval_transform

PLive = Callable[[torch.Tensor], np.ndarray]  # normalised images (N, 3, 112, 112) -> P(live) (N,)
SCORE_RESOLUTION = 1e-4  # step of the logit margin a score is rounded to (live_score)


def live_score(logits: np.ndarray) -> np.ndarray:
    """The score every scorer gives metrics: P(live) of the logit margin (live - spoof) rounded to
    SCORE_RESOLUTION, in float64.

    Runtimes (PyTorch, ONNX Runtime's fused kernels, XNNPACK) differ by ~1e-6 in a logit. A student whose frames
    all lie within that of each other (an undertrained one: P(live) 0.51153886 +- 1e-7 on every frame) was ranked
    by float rounding, and its checkpoint, .ort and .pte gave AUC 0.653, 0.663 and 0.648 on one split. Rounded
    margins are the same in every runtime (up to a frame on a rounding edge), so a checkpoint and its exports
    get the same metrics; and float64 keeps confident frames apart that float32 P(live) ties at exactly 1.0.
    """
    logits = np.asarray(logits, dtype=np.float64)
    margin = np.round((logits[:, 1] - logits[:, 0]) / SCORE_RESOLUTION) * SCORE_RESOLUTION
    small = np.exp(-np.abs(margin))  # the logistic function without overflow, exact on both tails
    return np.where(margin >= 0, 1.0 / (1.0 + small), small / (1.0 + small))


def score_rows(p_live: PLive, source: FrameSource, rows: np.ndarray, batch_size: int = 256, workers: int = 0,
               progress: bool = True, desc: str = "score", size: int = STUDENT_INPUT_SIZE,
               modalities: tuple[str, ...] = ("rgb",), missing: tuple[str, ...] = (),
               transform: Callable[[np.ndarray], torch.Tensor] | None = None) -> np.ndarray:
    """P(live) for ``rows`` of ``source`` with the evaluation transform (plain resize to ``size``, the
    student's input side; no augmentation), NaN for frames that cannot be decoded (``readable_scores`` leaves
    them out). A student of several ``modalities`` gets (N, M, 3, S, S) stacks, with the ``missing`` modalities
    zeroed (Protocol 2). ``transform``: an RGB student's own evaluation transform (its augmentation policy's,
    fasd.training.augment) instead of the plain resize."""
    if tuple(modalities) == ("rgb",):
        if missing:
            raise FasdError("--missing zeroes depth or IR: it needs a multimodal student (mobilenetv3-small-mm)")
        frames = EvalFrames(source, rows, transform or eval_transform(size))
    else:
        frames = ModalityEvalFrames(source, rows, modality_eval_transform(size, check_missing(missing)))
    loader = DataLoader(frames, batch_size=batch_size, shuffle=False, num_workers=workers)
    scores = np.empty(len(rows), dtype=np.float64)
    with tqdm(total=len(rows), unit="frame", desc=desc, disable=not progress, leave=False) as bar:
        for images, index, readable in loader:
            index, readable = index.numpy(), readable.numpy()
            batch = np.asarray(p_live(images), dtype=np.float64)
            invalid = readable & ~np.isfinite(batch)  # NaN is kept to mean "unreadable"
            if invalid.any():
                raise FasdError(f"the model gives a non-finite P(live) on frame "
                                f"{source.table.frame_id[rows[index[invalid][0]]]} of '{source.name}': its "
                                f"outputs are invalid")
            scores[index] = np.where(readable, batch, np.nan)
            bar.update(len(index))
    return scores


def readable_scores(source: FrameSource, rows: np.ndarray, scores: np.ndarray,
                    left_out_of: str = "the metrics") -> tuple[np.ndarray, np.ndarray]:
    """``rows`` and ``scores`` (``score_rows``) without the frames that could not be decoded (NaN scores), with
    one warning naming them; every frame unreadable is a FasdError. What every caller scores metrics, thresholds
    or scores.csv on."""
    bad = np.isnan(scores)
    if len(rows) and bad.all():
        raise FasdError(f"none of the {len(rows)} frames of '{source.name}' to score can be decoded "
                        f"(e.g. {source.table.frame_id[rows[0]]}); check its files")
    if bad.any():
        warn(f"{int(bad.sum())} unreadable frame(s) of '{source.name}' left out of {left_out_of}: "
             f"{listed(source.table.frame_id[rows[bad]])}")
    return rows[~bad], scores[~bad]


def check_video_ids(source: FrameSource, rows: np.ndarray) -> None:
    """Video-level metrics need video IDs (checked before scoring, and again on the scored rows)."""
    if not (source.table.video_id[rows] != "").any():
        raise FasdError(f"--video-level needs video IDs, but no frame of {source.name} has one; "
                        "evaluate at frame level, or give the frames a video_id")


def metrics_for(source: FrameSource, rows: np.ndarray, scores: np.ndarray, video: bool = False,
                val_threshold: float | None = None) -> dict:
    """The metrics JSON object of DESIGN.md for scored rows: frame level, or (``video``) one mean
    score per video, counted as videos and marked ``"level": "video"``."""
    table = source.table
    labels, attack = table.label[rows], table.attack_type[rows]
    if len(np.unique(labels)) == 1:  # compute_metrics reports the undefined rates as null; say why
        warn(f"every frame of '{source.name}' evaluated is {CLASS_NAMES[int(labels[0])]}: EER, AUC, ACER and the "
             f"other class's error rate are undefined (null)")
    if video:
        check_video_ids(source, rows)
        videos = video_level(table.video_id[rows], labels, scores, attack, table.frame_id[rows])
        return compute_metrics(videos.labels, videos.scores, videos.attack_types, val_threshold, level="video")
    return compute_metrics(labels, scores, attack, val_threshold)


def write_scores(path: Path, source: FrameSource, rows: np.ndarray, scores: np.ndarray) -> None:
    """One row per frame: frame_id,label,score (score = P(live)), so any tool can re-check the metrics."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["frame_id", "label", "score"])
        for frame_id, label, score in zip(source.table.frame_id[rows], source.table.label[rows], scores):
            out.writerow([frame_id, int(label), repr(float(score))])
