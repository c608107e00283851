"""The composite distillation loss L = L_CE + λ_KL·L_KL + λ_F·L_F + λ_T·L_T.

Labels: 0 = spoof, 1 = live (fasd.constants); logits are ordered [spoof, live].
Every term is computed in float32, whatever autocast produced.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fasd.constants import LABEL_LIVE, LABEL_SPOOF
from fasd.errors import FasdError

# Distances between unit vectors lie in [0, 2]; these sentinels never win a max / min.
_NO_POSITIVE = -1.0
_NO_NEGATIVE = 3.0


def ce_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the binary label, batch mean."""
    return F.cross_entropy(student_logits.float(), labels.long())


def kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """tau² · KL(softmax(z_T/tau) ‖ softmax(z_S/tau)): summed over classes, mean over the batch."""
    log_p_student = F.log_softmax(student_logits.float() / tau, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / tau, dim=1)
    return tau**2 * F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


def feature_loss(projection: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """‖normalize(projection) − f_T‖² summed over the feature dim, batch mean (f_T is unit norm)."""
    diff = F.normalize(projection.float(), dim=1) - teacher_feature.float()
    return diff.pow(2).sum(dim=1).mean()


def _pairwise_distances(z: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between rows; the clamp keeps sqrt's gradient finite at 0."""
    squared = (z.unsqueeze(1) - z.unsqueeze(0)).pow(2).sum(dim=2)
    return squared.clamp_min(1e-12).sqrt()


def triplet_loss(projection: torch.Tensor, labels: torch.Tensor, domains: torch.Tensor,
                 margin: float) -> torch.Tensor:
    """SSDG asymmetric triplet loss on normalize(projection).

    Each live anchor takes the farthest live sample of another domain as positive and the
    nearest spoof of any domain as negative: relu(d(a,p) − d(a,n) + margin), averaged over the
    anchors that have both. Spoof anchors are ignored. Exactly 0 (still attached to the
    graph) when no anchor qualifies, e.g. for a single-domain batch.
    """
    z = F.normalize(projection.float(), dim=1)
    dist = _pairwise_distances(z)
    live = labels == LABEL_LIVE
    spoof = labels == LABEL_SPOOF
    other_domain = domains.unsqueeze(1) != domains.unsqueeze(0)
    positive_mask = live.unsqueeze(1) & live.unsqueeze(0) & other_domain
    negative_mask = live.unsqueeze(1) & spoof.unsqueeze(0)
    hardest_positive = torch.where(positive_mask, dist, _NO_POSITIVE).amax(dim=1)
    hardest_negative = torch.where(negative_mask, dist, _NO_NEGATIVE).amin(dim=1)
    valid = positive_mask.any(dim=1) & negative_mask.any(dim=1)
    hinge = F.relu(hardest_positive - hardest_negative + margin) * valid
    return hinge.sum() / valid.sum().clamp_min(1)


class DistillationLoss(nn.Module):
    """L = L_CE + λ_KL·L_KL + λ_F·L_F + λ_T·L_T; a term whose λ is 0 is not computed.

    Returns (total, terms) where terms maps 'ce', 'kl', 'feat', 'triplet', 'total' to floats
    (unweighted term values; 0.0 for skipped terms).
    """

    def __init__(self, lambda_kl: float = 1.0, lambda_feat: float = 1.0,
                 lambda_triplet: float = 0.5, tau: float = 4.0, margin: float = 0.5) -> None:
        super().__init__()
        for flag, value in (("--lambda-kl", lambda_kl), ("--lambda-feat", lambda_feat),
                            ("--lambda-triplet", lambda_triplet), ("--margin", margin)):
            if value < 0:
                raise FasdError(f"{flag} must be >= 0, got {value}")
        if tau <= 0:
            raise FasdError(f"--tau must be > 0, got {tau}")
        self.lambda_kl = lambda_kl
        self.lambda_feat = lambda_feat
        self.lambda_triplet = lambda_triplet
        self.tau = tau
        self.margin = margin

    @property
    def needs_teacher(self) -> bool:
        """Whether cached teacher targets are needed (False for --no-teacher)."""
        return self.lambda_kl > 0 or self.lambda_feat > 0

    def forward(self, student_logits: torch.Tensor, projection: torch.Tensor,
                labels: torch.Tensor, domains: torch.Tensor,
                teacher_logits: torch.Tensor | None = None,
                teacher_features: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        terms = {"ce": ce_loss(student_logits, labels)}
        total = terms["ce"]
        if self.lambda_kl > 0:
            if teacher_logits is None:
                raise ValueError("lambda_kl > 0 needs teacher_logits")
            terms["kl"] = kl_loss(student_logits, teacher_logits, self.tau)
            total = total + self.lambda_kl * terms["kl"]
        if self.lambda_feat > 0:
            if teacher_features is None:
                raise ValueError("lambda_feat > 0 needs teacher_features")
            terms["feat"] = feature_loss(projection, teacher_features)
            total = total + self.lambda_feat * terms["feat"]
        if self.lambda_triplet > 0:
            terms["triplet"] = triplet_loss(projection, labels, domains, self.margin)
            total = total + self.lambda_triplet * terms["triplet"]
        terms["total"] = total
        names = list(terms)
        # One device sync for all logged values instead of one per term.
        values = torch.stack([terms[name].detach() for name in names]).tolist()
        logged = {"ce": 0.0, "kl": 0.0, "feat": 0.0, "triplet": 0.0}
        logged.update(zip(names, values))
        return total, logged
