"""RS2: caption-subspace alignment + one linear classifier shared by visual and text embeddings (MMDA eq. 3–7).

    L_RS2 = L_cls + L_align (equal weights)
    L_cls = −Σ_{e ∈ V ∪ T} [y·log(1 − p_e) + (1 − y)·log p_e]   (p_e: the shared head's spoof probability)

Decisions where the paper is silent:

* The head is a Linear(E, 2) on L2-normalised embeddings, logits ordered [spoof, live], so the binary
  cross-entropy above is the two-class cross-entropy. It starts as the CLIP zero-shot classifier: row c is
  the normalised mean of class c's unit caption embeddings times the CLIP's logit scale, bias 0.
* Sums become means: L_cls is the mean over the union of the visual embeddings (every U-DSA depth, every
  sample) and the caption embeddings; L_align (fasd.rs2_math) is the batch mean, averaged over the depths.
* With RS2 switched off (the ablation) the head is trained on the visual embeddings alone (plain
  cross-entropy) and there is no alignment term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fasd.constants import CLASS_NAMES
from fasd.rs2_math import rs2_align_loss


class RS2Head(nn.Module):
    """``forward(embedding (N, E)) -> logits (N, 2)`` [spoof, live] of the normalised embedding."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, len(CLASS_NAMES))

    @torch.no_grad()
    def init_zero_shot(self, captions: torch.Tensor, caption_labels: torch.Tensor, logit_scale: float) -> None:
        """Start as the CLIP zero-shot classifier over the captions' class centroids."""
        unit = F.normalize(captions.float(), dim=1)
        for label in range(len(CLASS_NAMES)):
            centroid = F.normalize(unit[caption_labels == label].mean(dim=0), dim=0)
            self.linear.weight[label] = logit_scale * centroid
        self.linear.bias.zero_()

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.linear(F.normalize(embedding, dim=-1))


def rs2_losses(head: RS2Head, depth_embeddings: list[torch.Tensor], labels: torch.Tensor,
               captions: torch.Tensor | list[torch.Tensor], caption_labels: torch.Tensor, min_over: str,
               rs2: bool) -> dict[str, torch.Tensor]:
    """{"cls", "align", "total"} for the visual embeddings of every U-DSA depth (each (N, E)).

    ``captions``: one (2K, E) caption set shared by every depth, or one per depth (the captions through the
    U-DSA): depth i aligns to its own set and L_cls runs over every depth's captions."""
    labels = labels.long()
    per_depth = list(captions) if isinstance(captions, (list, tuple)) else [captions]
    visual = torch.cat(depth_embeddings)
    visual_labels = labels.repeat(len(depth_embeddings))
    if not rs2:
        cls = F.cross_entropy(head(visual).float(), visual_labels)
        return {"cls": cls, "align": torch.zeros_like(cls), "total": cls}
    every = torch.cat([visual.float(), *(c.float() for c in per_depth)])
    every_labels = torch.cat([visual_labels, caption_labels.long().repeat(len(per_depth))])
    cls = F.cross_entropy(head(every).float(), every_labels)
    shared = len(per_depth) == 1
    align = torch.stack([rs2_align_loss(v, labels, per_depth[0 if shared else i], caption_labels, min_over)
                         for i, v in enumerate(depth_embeddings)]).mean()
    return {"cls": cls, "align": align, "total": cls + align}
