"""softmax_cross_entropy and mse against PyTorch, finite differences, stability, errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.losses import mse, softmax_cross_entropy
from tests.helpers import numeric_grad, tol

DTYPES = ["float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 7)])
def test_cross_entropy_matches_torch(rng, dtype, shape):
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    targets = rng.integers(0, shape[-1], shape[:-1])
    loss, grad = softmax_cross_entropy(logits, targets)
    lt = torch.from_numpy(logits).requires_grad_()
    ref = F.cross_entropy(lt.reshape(-1, shape[-1]), torch.from_numpy(targets).reshape(-1))
    ref.backward()
    np.testing.assert_allclose(loss, ref.item(), **tol(dtype))
    np.testing.assert_allclose(grad, lt.grad.numpy(), **tol(dtype))
    assert loss.dtype == grad.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_mask_matches_torch_weighting(rng, dtype):
    """A 0/1 mask equals dropping the masked positions; float weights weight the mean."""
    logits = rng.standard_normal((4, 6, 5)).astype(dtype)
    targets = rng.integers(0, 5, (4, 6))
    mask = rng.random((4, 6)) < 0.6
    mask[0, 0] = True
    loss, grad = softmax_cross_entropy(logits, targets, mask)
    lt = torch.from_numpy(logits).requires_grad_()
    m = torch.from_numpy(mask)
    ref = F.cross_entropy(lt[m], torch.from_numpy(targets)[m])
    ref.backward()
    np.testing.assert_allclose(loss, ref.item(), **tol(dtype))
    np.testing.assert_allclose(grad, lt.grad.numpy(), **tol(dtype))
    assert np.all(grad[~mask] == 0)
    w = rng.random((4, 6)).astype(dtype)
    loss_w, _ = softmax_cross_entropy(logits, targets, w)
    nll = F.cross_entropy(torch.from_numpy(logits).reshape(-1, 5),
                          torch.from_numpy(targets).reshape(-1), reduction="none").numpy()
    np.testing.assert_allclose(loss_w, (nll * w.ravel()).sum() / w.sum(), **tol(dtype))


def test_cross_entropy_is_stable_for_huge_logits(rng):
    logits = rng.standard_normal((3, 4)).astype(np.float32)
    logits[:, 1] += 1e4  # exp overflows float32 without the max shift
    loss, grad = softmax_cross_entropy(logits, np.array([1, 0, 1]))
    assert np.isfinite(loss) and np.isfinite(grad).all()
    ref = F.cross_entropy(torch.from_numpy(logits), torch.tensor([1, 0, 1]))
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-4)


def test_gradients_finite_differences(rng):
    logits = rng.standard_normal((3, 4, 5))
    targets = rng.integers(0, 5, (3, 4))
    w = rng.random((3, 4))
    _, grad = softmax_cross_entropy(logits, targets, w)
    num = numeric_grad(lambda: float(softmax_cross_entropy(logits, targets, w)[0]), logits)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)
    pred, target = rng.standard_normal((3, 4, 2)), rng.standard_normal((3, 4, 2))
    _, grad = mse(pred, target, w)
    num = numeric_grad(lambda: float(mse(pred, target, w)[0]), pred)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_matches_torch(rng, dtype):
    pred = rng.standard_normal((4, 5, 3)).astype(dtype)
    target = rng.standard_normal((4, 5, 3)).astype(dtype)
    loss, grad = mse(pred, target)
    pt = torch.from_numpy(pred).requires_grad_()
    ref = F.mse_loss(pt, torch.from_numpy(target))
    ref.backward()
    np.testing.assert_allclose(loss, ref.item(), **tol(dtype))
    np.testing.assert_allclose(grad, pt.grad.numpy(), **tol(dtype))
    # A (B, T) step mask broadcasts over features: equals the loss on the kept steps.
    mask = rng.random((4, 5)) < 0.5
    mask[0, 0] = True
    loss_m, grad_m = mse(pred, target, mask)
    pt.grad = None
    ref_m = F.mse_loss(pt[torch.from_numpy(mask)], torch.from_numpy(target)[mask])
    ref_m.backward()
    np.testing.assert_allclose(loss_m, ref_m.item(), **tol(dtype))
    np.testing.assert_allclose(grad_m, pt.grad.numpy(), **tol(dtype))


def test_cross_entropy_rejects_bad_arguments(rng):
    logits = rng.standard_normal((4, 3)).astype(np.float32)
    with pytest.raises(TypeError, match="integer class ids"):
        softmax_cross_entropy(logits, np.array([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        softmax_cross_entropy(logits, np.array([0, 1, 3, 0]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        softmax_cross_entropy(logits, np.array([0, -1, 2, 0]))
    with pytest.raises(ValueError, match=r"targets must have shape \(4,\)"):
        softmax_cross_entropy(logits, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="logits"):
        softmax_cross_entropy(logits.astype(np.int32), np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"mask must have shape \(4,\)"):
        softmax_cross_entropy(logits, np.array([0, 1, 2, 0]), np.ones(3, bool))
    with pytest.raises(ValueError, match="no position"):
        softmax_cross_entropy(logits, np.array([0, 1, 2, 0]), np.zeros(4, bool))
    with pytest.raises(ValueError, match=">= 0"):
        softmax_cross_entropy(logits, np.array([0, 1, 2, 0]), -np.ones(4))


def test_mse_rejects_bad_arguments(rng):
    pred = rng.standard_normal((4, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="target must match pred"):
        mse(pred, pred[:, :2])
    with pytest.raises(ValueError, match="target must match pred"):
        mse(pred, pred.astype(np.float64))
    with pytest.raises(TypeError, match="pred"):
        mse([1.0, 2.0], pred)
    with pytest.raises(ValueError, match="mask must have shape"):
        mse(pred, pred, np.ones(3, bool))
