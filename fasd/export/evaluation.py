"""One model evaluated on rows of a frame source, as ``fasd evaluate`` does it; ``fasd experiment`` reuses it for
its missing-modality matrix (Protocol 2), so both give the same numbers for the same checkpoint."""

from __future__ import annotations

import numpy as np

from fasd.data.source import FrameSource
from fasd.errors import warn
from fasd.evaluate.metrics import stored_val_threshold
from fasd.evaluate.scoring import SCORE_RESOLUTION, metrics_for, readable_scores, score_rows
from fasd.export.metadata import modalities_of
from fasd.export.runtimes import Scorer
from fasd.training.modalities import warn_absent_modalities


def evaluate_scorer(scorer: Scorer, source: FrameSource, rows: np.ndarray, missing: tuple[str, ...] = (),
                    batch_size: int = 256, video: bool = False, desc: str = "score",
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """(rows scored, their P(live), metrics) of a loaded model at its own input size and modalities, the
    ``missing`` ones given as zero images; frames that cannot be decoded are left out with a warning. HTER is at
    the threshold the model carries (its sources' validation EER threshold)."""
    modalities = modalities_of(scorer.metadata)
    if len(modalities) > 1:
        warn_absent_modalities([source], modalities, missing)
    rows, scores = readable_scores(source, rows, score_rows(
        scorer.p_live, source, rows, batch_size=batch_size, desc=desc, progress=progress,
        modalities=modalities, missing=missing, size=scorer.metadata["input_size"]))
    if len(scores) > 1 and np.ptp(scores) == 0:
        warn(f"{scorer.path} gives every frame of '{source.name}' the same score (logit margins within "
             f"{SCORE_RESOLUTION:g}): it does not separate these frames, and its AUC/EER are chance (0.5)")
    return rows, scores, metrics_for(source, rows, scores, video=video,
                                     val_threshold=stored_val_threshold(scorer.metadata))
