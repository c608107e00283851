"""Loss terms as functions of tensors, the loss-term registry and the weighted composite every recipe trains.

Each term is importable as a plain function (``ce_loss``, ``kl_loss``, ``feature_loss``, ``triplet_loss``,
``head_aware_loss``, ``rs2_align_loss``) and registered by name with the teacher targets and student outputs it
reads in fasd.student_train.loss_terms (``TERMS``, re-exported here); a composite with weight 0 for a term
neither computes it nor needs its targets.
Labels: 0 = spoof, 1 = live (fasd.constants); logits are ordered [spoof, live].
Every term is computed in float32, whatever autocast produced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from fasd.constants import LABEL_LIVE, LABEL_SPOOF
from fasd.errors import FasdError
# The term registry (names, aliases, help, what each reads) imports no torch; it is re-exported here.
from fasd.student_train.loss_terms import TERMS, LossTerm, register_loss  # noqa: F401
# RS2's alignment term (MMDA, paper B eq. 4–5) lives in a neutral module the MMDA teacher also imports.
from fasd.rs2_math import RS2_MIN_MODES, rs2_align_loss  # noqa: F401  (re-exported: a loss term of tensors)

# KL(p_T ‖ p_S) (Hinton, timm, torchdistill, HaTFAS; the default) or KL(p_S ‖ p_T) (paper A as printed).
KL_DIRECTIONS = ("teacher-student", "student-teacher")
# Distances between unit vectors lie in [0, 2]; these sentinels never win a max / min.
_NO_POSITIVE = -1.0
_NO_NEGATIVE = 3.0


def ce_loss(student_logits: torch.Tensor, labels: torch.Tensor, soft_labels: torch.Tensor | None = None
            ) -> torch.Tensor:
    """Cross-entropy on the binary label, batch mean; with ``soft_labels`` (N, 2) (mixed and/or label-smoothed
    targets) timm's SoftTargetCrossEntropy on them instead, as HaTFAS trains."""
    if soft_labels is not None:
        from timm.loss import SoftTargetCrossEntropy

        return SoftTargetCrossEntropy()(student_logits.float(), soft_labels.float())
    return F.cross_entropy(student_logits.float(), labels.long())


def kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float,
            direction: str = "teacher-student") -> torch.Tensor:
    """tau² · KL(softmax(z_T/tau) ‖ softmax(z_S/tau)): summed over classes, mean over the batch.

    ``direction`` "student-teacher": tau² · KL(p_S ‖ p_T), the arguments as paper A prints them (``--kl-direction``).
    """
    if direction not in KL_DIRECTIONS:
        raise FasdError(f"--kl-direction must be one of {', '.join(KL_DIRECTIONS)}, got '{direction}'")
    log_p_student = F.log_softmax(student_logits.float() / tau, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / tau, dim=1)
    if direction == KL_DIRECTIONS[1]:
        log_p_student, log_p_teacher = log_p_teacher, log_p_student
    return tau**2 * F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


def feature_loss(projection: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """‖normalize(projection) − normalize(f_T)‖² summed over the feature dim, batch mean. CLIP teachers cache unit
    f_T (normalising is a no-op); a ViT's raw CLS token (norm ~ 200) would swamp CE unnormalised."""
    diff = F.normalize(projection.float(), dim=1) - F.normalize(teacher_feature.float(), dim=1)
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


@dataclass
class StepBatch:
    """What a loss term may read: the student's outputs, labels, domains and the teacher's targets by name."""

    outputs: dict[str, torch.Tensor]  # logits, and when the student has them: projection, layer_cls
    labels: torch.Tensor
    domains: torch.Tensor
    targets: dict[str, torch.Tensor]
    soft_labels: torch.Tensor | None = None  # (N, 2) mixed / smoothed targets of the CE term (augment policies)


@dataclass(frozen=True)
class LossSettings:
    """Hyper-parameters of the terms (not weights)."""

    tau: float = 4.0  # KL temperature
    margin: float = 0.5  # triplet margin
    kl_direction: str = KL_DIRECTIONS[0]  # --kl-direction
    # Per-store (not per-frame) arrays of the teacher store's text/ group the active terms read (LossTerm.texts),
    # e.g. RS2's captions (K, D) and caption_labels (K,); the trainer fills them in from the store.
    texts: dict[str, torch.Tensor] = field(default_factory=dict)


def _check_weight(flag: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise FasdError(f"{flag} must be a finite number >= 0, got {value}")


class CompositeLoss(nn.Module):
    """Σ weight·term over registered terms; a term of weight 0 is not computed.

    Returns (total, logged): every weighted term's unweighted value (0.0 when skipped) and 'total', as floats.
    """

    def __init__(self, weights: dict[str, float], settings: LossSettings = LossSettings()) -> None:
        super().__init__()
        for name in weights:
            TERMS.get(name)  # an unknown term: one line listing the registered ones
        for name, value in weights.items():
            _check_weight(TERMS[name].flag, value)
        _check_weight("--margin", settings.margin)
        if not math.isfinite(settings.tau) or settings.tau <= 0:
            raise FasdError(f"--tau must be a finite number > 0, got {settings.tau}")
        if not any(value > 0 for value in weights.values()):
            raise FasdError("every loss weight is 0: give at least one term a weight > 0")
        self.weights, self.settings = dict(weights), settings

    def active(self) -> list[LossTerm]:
        return [TERMS[name] for name, weight in self.weights.items() if weight > 0]

    @property
    def needed_targets(self) -> tuple[str, ...]:
        """Teacher targets the active terms read (none: the run needs no store)."""
        return tuple(dict.fromkeys(t for term in self.active() for t in term.targets))

    @property
    def needed_texts(self) -> tuple[str, ...]:
        """Arrays of the store's text/ group the active terms read (LossSettings.texts)."""
        return tuple(dict.fromkeys(t for term in self.active() for t in term.texts))

    @property
    def needs_teacher(self) -> bool:
        return bool(self.needed_targets or self.needed_texts)

    @property
    def needed_outputs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(o for term in self.active() for o in term.outputs))

    def forward(self, batch: StepBatch) -> tuple[torch.Tensor, dict[str, float]]:
        computed = {term.name: term.compute(batch, self.settings) for term in self.active()}
        total = None
        for name, value in computed.items():
            weighted = value if self.weights[name] == 1.0 else self.weights[name] * value
            total = weighted if total is None else total + weighted
        computed["total"] = total
        names = list(computed)
        # One device sync for all logged values instead of one per term.
        values = torch.stack([computed[name].detach() for name in names]).tolist()
        logged = dict.fromkeys(self.weights, 0.0)
        logged.update(zip(names, values))
        return total, logged


class DistillationLoss(CompositeLoss):
    """Paper A's loss L = L_CE + λ_KL·L_KL + λ_F·L_F + λ_T·L_T with its tensors as arguments (the ``vlmkd``
    recipe's terms; a term whose λ is 0 is not computed).

    Returns (total, terms) where terms maps 'ce', 'kl', 'feat', 'triplet', 'total' to floats
    (unweighted term values; 0.0 for skipped terms).
    """

    def __init__(self, lambda_kl: float = 1.0, lambda_feat: float = 1.0,
                 lambda_triplet: float = 0.5, tau: float = 4.0, margin: float = 0.5) -> None:
        super().__init__({"ce": 1.0, "kl": lambda_kl, "feat": lambda_feat, "triplet": lambda_triplet},
                         LossSettings(tau=tau, margin=margin))

    def forward(self, student_logits: torch.Tensor, projection: torch.Tensor,
                labels: torch.Tensor, domains: torch.Tensor,
                teacher_logits: torch.Tensor | None = None,
                teacher_features: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        targets = {name: value for name, value in (("logits", teacher_logits), ("feature", teacher_features))
                   if value is not None}
        for term, argument in (("kl", "teacher_logits"), ("feat", "teacher_features")):
            if self.weights[term] > 0 and TERMS[term].targets[0] not in targets:
                raise ValueError(f"lambda_{term} > 0 needs {argument}")
        return super().forward(StepBatch({"logits": student_logits, "projection": projection}, labels, domains,
                                         targets))


def head_aware_loss(student_layers: torch.Tensor, teacher_layers: torch.Tensor) -> torch.Tensor:
    """HaTFAS head-aware loss (paper C): mean_k mean((t − s·sᵀt)²), s, t row-normalised; sᵀt couples the batch."""
    if student_layers.ndim != 3 or teacher_layers.ndim != 3 or student_layers.shape[:2] != teacher_layers.shape[:2]:
        raise ValueError(f"head_aware_loss needs (B, L, Ds) and (B, L, Dt) with equal B and L; got "
                         f"{tuple(student_layers.shape)} and {tuple(teacher_layers.shape)}")
    s = F.normalize(student_layers.float(), dim=2)  # (B, L, Ds): each CLS row unit norm
    t = F.normalize(teacher_layers.float(), dim=2)  # (B, L, Dt)
    correlation = torch.einsum("bls,blt->lst", s, t)  # C_k = s_kᵀ t_k, (L, Ds, Dt)
    reconstruction = torch.einsum("bls,lst->blt", s, correlation)  # R_k = s_k C_k, (B, L, Dt)
    return (t - reconstruction).pow(2).mean(dim=(0, 2)).mean()
