"""engine.ctc_loss: the Numba kernel against brute-force enumeration of every alignment, the
NumPy reference, torch.nn.functional.ctc_loss with autograd, and finite differences; the CUDA
kernels (simulator on machines without a GPU) against the CPU kernel; the argument checks."""
import itertools

import numpy as np
import pytest
import torch

import engine
from engine.kernels.reference import ctc_loss_reference

BRUTE_TOL = dict(rtol=1e-12, atol=1e-12)
TORCH_TOL = dict(rtol=1e-10, atol=1e-12)


def brute_force_nll(logits, target, blank):
    """-log p(target | x) of one (T, C) sequence: the sum over all C**T frame paths whose
    collapse (merge repeats, drop blanks) is the target."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    T, C = p.shape
    total = 0.0
    for path in itertools.product(range(C), repeat=T):
        merged = [k for i, k in enumerate(path) if i == 0 or k != path[i - 1]]
        if [k for k in merged if k != blank] == list(target):
            total += np.prod(p[np.arange(T), path])
    return -np.log(total)


def random_case(rng, T, B, C, max_len, blank=0):
    """Random logits, padded targets (labels != blank, some repeats), lengths that fit."""
    x = rng.normal(scale=2.0, size=(T, B, C))
    labels = np.array([k for k in range(C) if k != blank])
    target_lengths = rng.integers(0, max_len + 1, size=B)
    targets = rng.choice(labels, size=(B, max(max_len, 1)))
    targets[:, 1::3] = targets[:, 0::3][:, :targets[:, 1::3].shape[1]]  # adjacent repeats
    need = target_lengths + [np.sum(targets[b, 1:L] == targets[b, :L - 1]) if L else 0
                             for b, L in enumerate(target_lengths)]
    input_lengths = np.minimum(T, need + rng.integers(0, T, size=B))
    input_lengths = np.maximum(input_lengths, need)
    return x, targets, input_lengths.astype(np.int64), target_lengths.astype(np.int64)


def torch_ctc(x, targets, input_lengths, target_lengths, blank, reduction, zero_infinity):
    xt = torch.tensor(x, requires_grad=True)
    loss = torch.nn.functional.ctc_loss(
        xt.log_softmax(2), torch.tensor(targets), torch.tensor(input_lengths),
        torch.tensor(target_lengths), blank=blank, reduction=reduction,
        zero_infinity=zero_infinity)
    grad, = torch.autograd.grad(loss.sum(), xt)
    return loss.detach().numpy(), grad.numpy()


class TestCPU:
    backend = "cpu"
    long_T = 40  # frames of the float32 case (the simulator runs a short one)

    def ctc(self, *args, **kw):
        return engine.ctc_loss(*args, backend=self.backend, **kw)

    @pytest.mark.parametrize("blank", [0, 2])
    def test_brute_force(self, blank):
        rng = np.random.default_rng(1)
        for T, C, target in [(4, 3, [1]), (5, 3, [1, 1]), (5, 3, [1, 2 if blank != 2 else 0]),
                             (3, 3, []), (6, 3, [1, 2, 1] if blank == 0 else [1, 0, 1]),
                             (3, 3, [1, 1])]:
            x = rng.normal(scale=1.5, size=(T, 1, C))
            loss, _ = self.ctc(x, np.array([target + [1]]), np.array([T]),
                               np.array([len(target)]), blank=blank, reduction="none")
            np.testing.assert_allclose(loss[0], brute_force_nll(x[:, 0], target, blank),
                                       **BRUTE_TOL)

    def test_reference(self):
        rng = np.random.default_rng(2)
        x, tg, il, tl = random_case(rng, T=15, B=6, C=5, max_len=5)
        nll, grad = self.ctc(x, tg, il, tl, reduction="none")
        ref_nll, ref_grad = ctc_loss_reference(x, [tg[b, :tl[b]] for b in range(6)], il, tl)
        np.testing.assert_allclose(nll, ref_nll, **TORCH_TOL)
        np.testing.assert_allclose(grad, ref_grad, **TORCH_TOL)

    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    @pytest.mark.parametrize("blank", [0, 3])
    def test_torch(self, reduction, blank):
        rng = np.random.default_rng(3 + blank)
        x, tg, il, tl = random_case(rng, T=20, B=7, C=6, max_len=6, blank=blank)
        tl[0] = 0  # an empty transcript
        loss, grad = self.ctc(x, tg, il, tl, blank=blank, reduction=reduction)
        want_loss, want_grad = torch_ctc(x, tg, il, tl, blank, reduction, False)
        np.testing.assert_allclose(loss, want_loss, **TORCH_TOL)
        np.testing.assert_allclose(grad, want_grad, **TORCH_TOL)
        assert np.all(grad[il[1]:, 1] == 0) and np.abs(grad[:il[1], 1]).max() > 0

    def test_concatenated_targets_equal_padded(self):
        rng = np.random.default_rng(4)
        x, tg, il, tl = random_case(rng, T=12, B=4, C=4, max_len=4)
        flat = np.concatenate([tg[b, :tl[b]] for b in range(4)])
        padded = self.ctc(x, tg, il, tl, reduction="sum")
        concatenated = self.ctc(x, flat, il, tl, reduction="sum")
        np.testing.assert_array_equal(padded[0], concatenated[0])
        np.testing.assert_array_equal(padded[1], concatenated[1])

    @pytest.mark.parametrize("zero_infinity", [False, True])
    def test_target_too_long(self, zero_infinity):
        rng = np.random.default_rng(5)
        x = rng.normal(size=(6, 3, 4))
        tg = np.array([[1, 1, 2, 0], [1, 2, 3, 1], [2, 2, 2, 0]])
        tl, il = np.array([3, 4, 3]), np.array([6, 3, 4])  # rows 1 and 2 cannot align
        loss, grad = self.ctc(x, tg, il, tl, reduction="none", zero_infinity=zero_infinity)
        want_loss, want_grad = torch_ctc(x, tg, il, tl, 0, "none", zero_infinity)
        np.testing.assert_allclose(loss, want_loss, **TORCH_TOL)
        if zero_infinity:
            np.testing.assert_allclose(grad, want_grad, **TORCH_TOL)
            assert np.all(grad[:, 1:] == 0)
        else:
            assert np.isinf(loss[1:]).all() and np.isnan(grad[:il[1], 1]).all()
            np.testing.assert_allclose(grad[:, 0], want_grad[:, 0], **TORCH_TOL)

    def test_finite_differences(self):
        rng = np.random.default_rng(6)
        x, tg, il, tl = random_case(rng, T=8, B=3, C=4, max_len=3)
        _, grad = self.ctc(x, tg, il, tl)
        eps = 1e-6
        for idx in [(0, 0, 0), (3, 1, 2), (il[2] - 1, 2, 1), (5, 0, 3)]:
            up, down = x.copy(), x.copy()
            up[idx] += eps
            down[idx] -= eps
            fd = (float(self.ctc(up, tg, il, tl)[0]) - float(self.ctc(down, tg, il, tl)[0]))
            np.testing.assert_allclose(grad[idx], fd / (2 * eps), rtol=1e-6, atol=1e-9)

    def test_float32_accumulates_in_float64(self):
        rng = np.random.default_rng(7)
        x, tg, il, tl = random_case(rng, T=self.long_T, B=3, C=8, max_len=self.long_T // 4)
        loss32, grad32 = self.ctc(x.astype(np.float32), tg, il, tl)
        loss64, grad64 = self.ctc(x.astype(np.float32).astype(np.float64), tg, il, tl)
        assert loss32.dtype == np.float32 and grad32.dtype == np.float32
        np.testing.assert_allclose(loss32, loss64, rtol=1e-6)
        np.testing.assert_allclose(grad32, grad64, rtol=1e-5, atol=1e-7)


class TestGPU(TestCPU):
    """The CUDA kernels (the simulator here) on the same cases, through backend="gpu"."""
    backend = "gpu"
    long_T = 10

    def test_equals_cpu_kernel(self):
        rng = np.random.default_rng(8)
        x, tg, il, tl = random_case(rng, T=9, B=3, C=4, max_len=3)
        il[2] = 0  # no frames: loss 0 for an empty target, inf otherwise
        tl[2] = 0
        for dtype in (np.float32, np.float64):
            gpu = self.ctc(x.astype(dtype), tg, il, tl, reduction="none")
            cpu = engine.ctc_loss(x.astype(dtype), tg, il, tl, reduction="none")
            np.testing.assert_allclose(gpu[0], cpu[0], rtol=1e-12)
            np.testing.assert_allclose(gpu[1], cpu[1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(logits=np.zeros((4, 2), np.float64)), ValueError, r"logits must be \(T, B, C\)"),
    (dict(logits=np.zeros((4, 2, 3), np.int64)), TypeError, "logits must have dtype"),
    (dict(targets=np.array([[1, 3], [1, 1]])), ValueError, r"targets must lie in 0..C-1=2"),
    (dict(targets=np.array([[1, 0], [1, 1]])), ValueError, "must not contain the blank"),
    (dict(targets=np.array([1, 2, 1])), ValueError, "1-D of length sum"),
    (dict(targets=np.array([[1.0, 2.0], [1.0, 1.0]])), TypeError, "targets must hold int"),
    (dict(input_lengths=np.array([4, 5])), ValueError, r"input_lengths must lie in 0..T=4"),
    (dict(input_lengths=np.array([4])), ValueError, r"input_lengths must have shape \(B=2,"),
    (dict(target_lengths=np.array([2, -1])), ValueError, "target_lengths must be >= 0"),
    (dict(target_lengths=np.array([3, 2])), ValueError, "S >= max"),
    (dict(blank=3), ValueError, "blank must be <= 2"),
    (dict(reduction="avg"), ValueError, "reduction must be one of"),
])
def test_bad_arguments(kwargs, error, match):
    args = dict(logits=np.random.default_rng(0).normal(size=(4, 2, 3)),
                targets=np.array([[1, 2], [2, 2]]), input_lengths=np.array([4, 4]),
                target_lengths=np.array([2, 2]))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        engine.ctc_loss(**args)
