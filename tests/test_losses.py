"""Each loss term against numbers computed by hand or with plain numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fasd.errors import FasdError
from fasd.student_train.losses import (DistillationLoss, ce_loss, feature_loss, kl_loss,
                                       triplet_loss)

LIVE, SPOOF = 1, 0


def unit_points(degrees: list[float]) -> torch.Tensor:
    """2-D points at the given angles; scaled by 3 to check that the losses normalise."""
    radians = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    return 3 * torch.stack([radians.cos(), radians.sin()], dim=1).float()


def chord(delta_degrees: float) -> float:
    """Euclidean distance between two unit vectors that are delta_degrees apart."""
    return 2 * math.sin(math.radians(delta_degrees) / 2)


def test_ce_loss_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([SPOOF, LIVE])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert ce_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_kl_loss_at_tau_4_matches_numpy():
    rng = np.random.default_rng(0)
    student = rng.normal(scale=3, size=(5, 2))
    teacher = rng.normal(scale=3, size=(5, 2))
    tau = 4.0

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p_t, p_s = softmax(teacher / tau), softmax(student / tau)
    expected = tau**2 * np.mean(np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=1))
    got = kl_loss(torch.tensor(student, dtype=torch.float32),
                  torch.tensor(teacher, dtype=torch.float32), tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_kl_loss_is_zero_for_identical_logits():
    logits = torch.tensor([[1.0, -2.0], [0.5, 0.5]])
    assert kl_loss(logits, logits.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-7)


def test_feature_loss_normalises_projection_and_averages_over_batch():
    projection = torch.tensor([[3.0, 4.0], [0.0, 2.0]])  # -> (0.6, 0.8), (0, 1)
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float16)
    # row 0: 0.4² + 0.8² = 0.8; row 1: 0
    assert feature_loss(projection, teacher).item() == pytest.approx(0.4, rel=1e-6)


# Angles (degrees), labels and domains of the triplet example used below.
ANGLES = [0, 30, 90, 150, 60, 200]
LABELS = [LIVE, LIVE, LIVE, LIVE, SPOOF, SPOOF]
DOMAINS = [0, 1, 1, 0, 0, 1]


def triplet(angles, labels, domains, margin):
    return triplet_loss(unit_points(angles), torch.tensor(labels), torch.tensor(domains),
                        margin).item()


def test_triplet_picks_farthest_cross_domain_positive_and_nearest_spoof():
    m = 0.5
    # anchor 0 (0°, d0): positives {30°, 90°} -> 90° (the same-domain 150° is not eligible);
    #                    negatives {60°, 200°} -> 60°
    # anchor 1 (30°, d1): positives {0°, 150°} -> 150°; negative 60°
    # anchor 2 (90°, d1): positives {0°, 150°} -> 0°; negative 60°
    # anchor 3 (150°, d0): positives {30°, 90°} -> 30°; negative 200°
    per_anchor = [
        chord(90) - chord(60) + m,
        chord(120) - chord(30) + m,
        chord(90) - chord(30) + m,
        chord(120) - chord(50) + m,
    ]
    expected = sum(max(v, 0.0) for v in per_anchor) / 4
    assert triplet(ANGLES, LABELS, DOMAINS, m) == pytest.approx(expected, rel=1e-5)
    # A same-domain positive for anchor 0 (150° instead of 90°) would give another value.
    wrong = (max(chord(150) - chord(60) + m, 0) + sum(per_anchor[1:])) / 4
    assert abs(expected - wrong) > 0.05


def test_triplet_is_exactly_zero_on_single_domain_batch_and_differentiable():
    projection = unit_points([0, 30, 90, 200]).requires_grad_(True)
    loss = triplet_loss(projection, torch.tensor([LIVE, LIVE, SPOOF, SPOOF]),
                        torch.tensor([2, 2, 2, 2]), 0.5)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(projection.grad, torch.zeros_like(projection))


def test_triplet_is_zero_without_spoofs():
    assert triplet([0, 90], [LIVE, LIVE], [0, 1], 0.5) == 0.0


def test_triplet_ignores_spoof_anchors():
    base = triplet(ANGLES, LABELS, DOMAINS, 0.5)
    # Two extra spoofs, never the nearest spoof of a live anchor, in two spoof-spoof geometries.
    for extra in ([250, 260], [240, 290]):
        with_extra = triplet(ANGLES + extra, LABELS + [SPOOF, SPOOF], DOMAINS + [0, 1], 0.5)
        assert with_extra == pytest.approx(base, rel=1e-6)


def test_triplet_margin_effect_and_mean_over_qualifying_anchors():
    angles, labels, domains = [0, 60, 180], [LIVE, LIVE, SPOOF], [0, 1, 1]
    # anchor 0: d(a,p) = chord(60) = 1, d(a,n) = 2; anchor 1: d(a,p) = 1, d(a,n) = chord(120)
    assert triplet(angles, labels, domains, 0.0) == 0.0
    for margin in (0.9, 1.5):
        expected = (max(1 - 2 + margin, 0) + max(1 - chord(120) + margin, 0)) / 2
        assert triplet(angles, labels, domains, margin) == pytest.approx(expected, rel=1e-5)


def test_triplet_gradient_is_finite_for_coincident_points():
    projection = unit_points([0, 0, 0, 90]).requires_grad_(True)
    loss = triplet_loss(projection, torch.tensor([LIVE, SPOOF, LIVE, SPOOF]),
                        torch.tensor([0, 0, 1, 1]), 0.5)
    loss.backward()
    assert loss.item() == pytest.approx(0.5, rel=1e-5)
    assert torch.isfinite(projection.grad).all()


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 2, generator=g)
    projection = torch.randn(6, 8, generator=g)
    labels = torch.tensor([LIVE, SPOOF, LIVE, SPOOF, LIVE, SPOOF])
    domains = torch.tensor([0, 0, 1, 1, 2, 2])
    teacher_logits = torch.randn(6, 2, generator=g)
    teacher_features = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1)
    return logits, projection, labels, domains, teacher_logits, teacher_features


def test_distillation_loss_weights_each_term():
    logits, projection, labels, domains, t_logits, t_feat = batch()
    loss = DistillationLoss(lambda_kl=0.7, lambda_feat=2.0, lambda_triplet=0.5, tau=4, margin=0.5)
    total, terms = loss(logits, projection, labels, domains, t_logits, t_feat)
    ce = ce_loss(logits, labels).item()
    kl = kl_loss(logits, t_logits, 4).item()
    feat = feature_loss(projection, t_feat).item()
    tri = triplet_loss(projection, labels, domains, 0.5).item()
    assert terms == pytest.approx({"ce": ce, "kl": kl, "feat": feat, "triplet": tri,
                                   "total": ce + 0.7 * kl + 2.0 * feat + 0.5 * tri})
    assert total.item() == pytest.approx(terms["total"])
    assert kl > 0 and feat > 0 and tri > 0


def test_distillation_loss_without_teacher_is_cross_entropy():
    logits, projection, labels, domains, _, _ = batch()
    loss = DistillationLoss(lambda_kl=0, lambda_feat=0, lambda_triplet=0)
    assert not loss.needs_teacher
    total, terms = loss(logits, projection, labels, domains)
    assert total.item() == pytest.approx(ce_loss(logits, labels).item())
    assert terms["kl"] == terms["feat"] == terms["triplet"] == 0.0


def test_distillation_loss_needs_teacher_targets_when_weighted():
    logits, projection, labels, domains, _, _ = batch()
    with pytest.raises(ValueError, match="teacher_logits"):
        DistillationLoss()(logits, projection, labels, domains)


@pytest.mark.parametrize("kwargs", [{"lambda_kl": -1}, {"margin": -0.1}, {"tau": 0}])
def test_distillation_loss_rejects_out_of_range_settings(kwargs):
    with pytest.raises(FasdError):
        DistillationLoss(**kwargs)
