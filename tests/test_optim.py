"""SGD, Adam (AdamW semantics) and clip_grad_norm against torch.optim, state round trips."""
import numpy as np
import pytest
import torch

from engine.optim import SGD, Adam, clip_grad_norm, optimizer_from_config
from tests.helpers import tol

DTYPES = ["float32", "float64"]
STEPS = 6


def _problem(rng, dtype):
    """Parameters and per-step gradients (random, so every update differs)."""
    shapes = {"w": (4, 3), "b": (3,)}
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
             for _ in range(STEPS)]
    return params, grads


def _run_torch(make_opt, params, grads, lr_at=None):
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = make_opt(list(tp.values()))
    for t, g in enumerate(grads):
        if lr_at is not None:
            opt.param_groups[0]["lr"] = lr_at(t)
        for k, p in tp.items():
            p.grad = torch.from_numpy(g[k].copy())
        opt.step()
    return {k: p.detach().numpy() for k, p in tp.items()}


def _run_engine(opt, params, grads):
    params = {k: v.copy() for k, v in params.items()}
    for g in grads:
        opt.step(params, {k: v.copy() for k, v in g.items()})
    return params


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_matches_torch(rng, dtype, momentum, nesterov):
    params, grads = _problem(rng, dtype)
    ours = _run_engine(SGD(0.1, momentum=momentum, nesterov=nesterov), params, grads)
    ref = _run_torch(lambda p: torch.optim.SGD(p, lr=0.1, momentum=momentum,
                                               nesterov=nesterov), params, grads)
    for k in params:
        np.testing.assert_allclose(ours[k], ref[k], **tol(dtype))
        assert ours[k].dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_matches_torch_adamw(rng, dtype, weight_decay):
    params, grads = _problem(rng, dtype)
    kw = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=weight_decay)
    ours = _run_engine(Adam(**kw), params, grads)
    ref = _run_torch(lambda p: torch.optim.AdamW(p, foreach=False, **kw), params, grads)
    for k in params:
        np.testing.assert_allclose(ours[k], ref[k], **tol(dtype))


def test_schedule_sets_the_lr_per_step(rng):
    params, grads = _problem(rng, "float64")
    def schedule(t):
        return 0.1 * 0.5 ** t

    ours = _run_engine(SGD(1.0, momentum=0.5, schedule=schedule), params, grads)

    ref = _run_torch(lambda p: torch.optim.SGD(p, lr=1.0, momentum=0.5), params, grads,
                     lr_at=schedule)
    for k in params:
        np.testing.assert_allclose(ours[k], ref[k], **tol("float64"))


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(rng, max_norm):
    grads = {"a": rng.standard_normal((5, 3)).astype(np.float32),
             "b": rng.standard_normal(7).astype(np.float32)}
    tensors = [torch.zeros(g.shape, requires_grad=True) for g in grads.values()]
    for t, g in zip(tensors, grads.values()):
        t.grad = torch.from_numpy(g.copy())
    ref_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    norm = clip_grad_norm(grads, max_norm)
    np.testing.assert_allclose(norm, ref_norm.item(), **tol(np.float32))
    for t, g in zip(tensors, grads.values()):
        np.testing.assert_allclose(g, t.grad.numpy(), **tol(np.float32))
    after = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads.values()))
    np.testing.assert_allclose(after, min(max_norm, float(norm)), rtol=1e-5)


@pytest.mark.parametrize("make", [lambda: SGD(0.05, momentum=0.9, nesterov=True),
                                  lambda: Adam(0.01, weight_decay=0.01)])
def test_state_dict_resumes_exactly(rng, make):
    params, grads = _problem(rng, "float32")
    straight = _run_engine(make(), params, grads)
    first = make()
    half = _run_engine(first, params, grads[:3])
    state = first.state_dict()
    resumed = optimizer_from_config(state["config"])
    resumed.load_state_dict(state, half)
    final = _run_engine(resumed, half, grads[3:])
    for k in params:
        np.testing.assert_array_equal(final[k], straight[k])


def test_updates_are_in_place(rng):
    params, grads = _problem(rng, "float32")
    live = dict(params)
    Adam(0.1).step(params, grads[0])
    assert all(params[k] is live[k] for k in params)
    assert not np.array_equal(params["w"], _problem(np.random.default_rng(0), "float32")[0]["w"])


def test_rejects_bad_arguments(rng):
    params, grads = _problem(rng, "float32")
    with pytest.raises(ValueError, match="lr"):
        SGD(-0.1)
    with pytest.raises(TypeError, match="lr"):
        Adam(lr="0.1")
    with pytest.raises(ValueError, match="betas"):
        Adam(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="nesterov"):
        SGD(0.1, nesterov=True)
    with pytest.raises(TypeError, match="schedule"):
        SGD(0.1, schedule=0.5)
    with pytest.raises(ValueError, match="missing"):
        SGD(0.1).step(params, {"w": grads[0]["w"]})
    with pytest.raises(ValueError, match=r"grads\['w'\]"):
        SGD(0.1).step(params, {"w": grads[0]["w"].T, "b": grads[0]["b"]})
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(grads[0], 0)
    with pytest.raises(ValueError, match="'Adam'"):
        SGD(0.1).load_state_dict(Adam().state_dict(), params)
