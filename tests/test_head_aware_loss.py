"""HaTFAS' head-aware loss (PAPER_FACTS C): a hand-worked example, an independent numpy loop, its invariances,
the batch sizes where it vanishes, gradients and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fasd.student_train.losses import head_aware_loss


def reference(student: np.ndarray, teacher: np.ndarray) -> float:
    """The paper's formula written as plain loops over layers, rows and columns (float64)."""
    batch, layers, ds = student.shape
    dt = teacher.shape[2]
    total = 0.0
    for k in range(layers):
        s = [student[b, k] / np.sqrt(sum(v * v for v in student[b, k])) for b in range(batch)]
        t = [teacher[b, k] / np.sqrt(sum(v * v for v in teacher[b, k])) for b in range(batch)]
        c = [[sum(s[b][i] * t[b][j] for b in range(batch)) for j in range(dt)] for i in range(ds)]
        err = 0.0
        for b in range(batch):
            for j in range(dt):
                r = sum(s[b][i] * c[i][j] for i in range(ds))
                err += (t[b][j] - r) ** 2
        total += err / (batch * dt)
    return total / layers


def test_hand_worked_example():
    # s = [[1, 0], [0.6, 0.8]], t = [[1, 0, 0], [0, 1, 0]] after normalising the rows;
    # C = sᵀt = [[1, 0.6, 0], [0, 0.8, 0]], R = sC = [[1, 0.6, 0], [0.6, 1, 0]],
    # t − R = [[0, −0.6, 0], [−0.6, 0, 0]]: mean of squares = 0.72 / 6 = 0.12.
    student = torch.tensor([[[2.0, 0.0]], [[3.0, 4.0]]])  # (B=2, L=1, Ds=2), rows not unit norm
    teacher = torch.tensor([[[5.0, 0.0, 0.0]], [[0.0, 0.5, 0.0]]])  # (B=2, L=1, Dt=3)
    assert head_aware_loss(student, teacher).item() == pytest.approx(0.12, abs=1e-6)


def test_matches_independent_loops_and_averages_layers():
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(5, 3, 4)), rng.normal(size=(5, 3, 7))
    value = head_aware_loss(torch.from_numpy(student), torch.from_numpy(teacher)).item()
    assert value == pytest.approx(reference(student, teacher), rel=1e-5)
    per_layer = [reference(student[:, k:k + 1], teacher[:, k:k + 1]) for k in range(3)]
    assert value == pytest.approx(np.mean(per_layer), rel=1e-5)
    assert len(set(np.round(per_layer, 6))) == 3  # the layers really differ: the mean is over k


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.01, 100.0), min_size=8, max_size=8))
def test_invariant_to_positive_row_scales(scales):
    generator = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(4, 2, 6, generator=generator), torch.randn(4, 2, 9, generator=generator)
    a = torch.tensor(scales[:4], dtype=torch.float32).view(4, 1, 1)
    b = torch.tensor(scales[4:], dtype=torch.float32).view(4, 1, 1)
    torch.testing.assert_close(head_aware_loss(student * a, teacher * b), head_aware_loss(student, teacher),
                               rtol=1e-4, atol=1e-6)


def test_zero_for_one_sample_or_orthonormal_student_rows():
    # R = (s sᵀ) t: zero whenever s sᵀ = I_B, i.e. the B student rows are orthonormal (B <= Ds).
    generator = torch.Generator().manual_seed(2)
    teacher = torch.randn(3, 2, 5, generator=generator)
    assert head_aware_loss(torch.randn(1, 2, 4, generator=generator), teacher[:1]).item() == pytest.approx(0, abs=1e-7)
    orthonormal = torch.eye(4)[:3].view(3, 1, 4).repeat(1, 2, 1) * 7.0  # rows e0, e1, e2 (scaled)
    assert head_aware_loss(orthonormal, teacher).item() == pytest.approx(0, abs=1e-7)
    aligned = torch.randn(3, 2, 5, generator=generator)  # S = T with B > 1: not zero in general
    assert head_aware_loss(aligned, aligned).item() > 1e-3


def test_gradients_reach_the_student_only():
    generator = torch.Generator().manual_seed(3)
    student = torch.randn(6, 3, 8, generator=generator, requires_grad=True)
    teacher = torch.randn(6, 3, 16, generator=generator)
    head_aware_loss(student, teacher).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_float32_whatever_the_input(dtype):
    generator = torch.Generator().manual_seed(4)
    student, teacher = torch.randn(4, 3, 8, generator=generator), torch.randn(4, 3, 12, generator=generator)
    low = head_aware_loss(student.to(dtype), teacher.to(dtype))
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(head_aware_loss(student, teacher).item(), rel=2e-2)


@pytest.mark.parametrize("student_shape, teacher_shape", [((4, 3, 8), (5, 3, 8)), ((4, 3, 8), (4, 2, 8)),
                                                          ((4, 8), (4, 8))])
def test_shape_mismatch_is_a_value_error(student_shape, teacher_shape):
    with pytest.raises(ValueError, match="equal B and L"):
        head_aware_loss(torch.randn(*student_shape), torch.randn(*teacher_shape))
