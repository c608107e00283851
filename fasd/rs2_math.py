"""RS2's alignment loss (MMDA, paper B eq. 4–5) as a pure tensor function.

Neutral ground: the MMDA teacher (fasd.teacher_cache) fine-tunes with it and the student's ``rs2`` loss term
(fasd.student_train.losses re-exports it) distils with it, and neither side imports the other.

    d_i = ½ · min_t (1 − cos(v_i, t)) ∈ [0, 1]
    L_align = −[y_i · log(1 − d_i) + (1 − y_i) · log d_i],   y = 1 live

Decisions where the paper is silent:

* ``min_over="over-all"`` (the paper as written) takes the min over every caption, live and spoof;
  ``"own-class"`` takes it over the captions of the sample's own label only. Note what the second reading
  does to a spoof sample: −log d pushes it *away* from the nearest spoof caption, exactly as the over-all
  reading pushes it away from every caption.
* The paper writes Σ over samples; fasd takes the batch mean so the term's scale does not depend on the
  batch size (like every other fasd loss term).
* d is clamped to [EPS, 1 − EPS] before the logs: an embedding exactly on a caption (d = 0) or antipodal to
  all of them (d = 1) gives a finite loss (−log EPS ≈ 13.8) instead of inf.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fasd.constants import LABEL_LIVE
from fasd.errors import FasdError

RS2_MIN_MODES = ("over-all", "own-class")
EPS = 1e-6


def rs2_distance(embedding: torch.Tensor, labels: torch.Tensor, captions: torch.Tensor,
                 caption_labels: torch.Tensor, min_over: str = "over-all") -> torch.Tensor:
    """d (B,) ∈ [0, 1]: half the smallest cosine distance of each embedding to the captions (eq. 4)."""
    if min_over not in RS2_MIN_MODES:
        raise FasdError(f"unknown --rs2-min '{min_over}'; valid: {', '.join(RS2_MIN_MODES)}")
    with torch.autocast(embedding.device.type, enabled=False):  # float32 whatever autocast is active
        cosine = F.normalize(embedding.float(), dim=1) @ F.normalize(captions.float(), dim=1).t()  # (B, K)
    distance = 0.5 * (1.0 - cosine)
    if min_over == "own-class":
        own = labels.view(-1, 1).long() == caption_labels.view(1, -1).long()
        if not bool(own.any(dim=1).all()):
            raise FasdError("--rs2-min own-class needs at least one caption of each label in the batch")
        distance = torch.where(own, distance, torch.full_like(distance, 2.0))  # 2 > any d: never the min
    return distance.amin(dim=1).clamp(0.0, 1.0)


def rs2_align_loss(embedding: torch.Tensor, labels: torch.Tensor, captions: torch.Tensor,
                   caption_labels: torch.Tensor, min_over: str = "over-all") -> torch.Tensor:
    """L_align (eq. 5), batch mean. ``embedding`` (B, D) and ``captions`` (K, D) need not be unit norm;
    ``labels`` (B,) and ``caption_labels`` (K,) are 0 = spoof / 1 = live."""
    d = rs2_distance(embedding, labels, captions, caption_labels, min_over).clamp(EPS, 1.0 - EPS)
    live = (labels == LABEL_LIVE).float()
    return -(live * torch.log1p(-d) + (1.0 - live) * torch.log(d)).mean()
