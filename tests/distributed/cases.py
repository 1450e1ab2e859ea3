"""Training runs for the distributed tests, each the same under any number of ranks.

    python tests/distributed/cases.py OUT.npz             # one process
    mpiexec -n 3 python tests/distributed/cases.py OUT.npz

Rank 0 writes every case's final weights and history to OUT.npz; ``FAIL_ON_RANK=r`` makes
rank r raise in its second training step, or exit at once with ``FAIL_MODE=die`` (the fault
tests).
"""
import os
import sys

import numpy as np

import engine
from engine.distributed import ranks


def data(seed, n, t, features):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, t, features))
    lengths = rng.integers(1, t + 1, n)
    return rng, x, lengths


def many_to_one_packed():
    """Variable lengths (packed), MSE, Adam with clipping, early stopping on validation data;
    23 samples in batches of 5: neither divides by 2 or 3 ranks."""
    rng, x, lengths = data(0, 31, 7, 3)
    y = rng.normal(size=(31, 2))
    model = engine.Sequential([engine.LSTM(3, 6, batch_first=True, dtype="float64", seed=1),
                               engine.Dense(6, 2, dtype="float64", seed=2)],
                              output="many_to_one")
    model.compile("mse", engine.Adam(lr=3e-2), clip_norm=0.5)
    history = model.fit(x[:23], y[:23], epochs=3, batch_size=5, seed=4, lengths=lengths[:23],
                        validation_data=(x[23:], y[23:], lengths[23:]), patience=2,
                        verbose=False, distributed=True)
    return model, history


def many_to_many_masked():
    """Token ids through an Embedding and a bidirectional LSTM, cross-entropy masked by
    lengths, SGD with momentum; 13 samples in batches of 4 (a last batch of 1: ranks with
    no sample in it)."""
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 7, (13, 6))
    lengths = rng.integers(1, 7, 13)
    targets = rng.integers(0, 7, (13, 6))
    model = engine.Sequential([engine.Embedding(7, 4, dtype="float64", seed=6),
                               engine.LSTM(4, 5, batch_first=True, bidirectional=True,
                                           dtype="float64", seed=7),
                               engine.Dense(10, 7, dtype="float64", seed=8)])
    model.compile("cross_entropy", engine.SGD(lr=0.3, momentum=0.9))
    history = model.fit(ids, targets, epochs=2, batch_size=4, seed=9, lengths=lengths,
                        verbose=False, distributed=True)
    return model, history


def stacked_dropout():
    """Two layers with dropout between them, MSE over every step; 11 samples in batches of 4;
    an on_batch that asks to stop on rank 0 only stops every rank."""
    rng, x, _ = data(10, 11, 5, 2)
    y = rng.normal(size=(11, 5, 3))
    model = engine.Sequential([engine.LSTM(2, 4, num_layers=2, dropout=0.4, batch_first=True,
                                           dtype="float64", seed=11),
                               engine.Dense(4, 3, dtype="float64", seed=12)])
    model.compile("mse", engine.Adam(lr=1e-2))
    updates = []  # rank 0's on_batch stops the second epoch after its second update

    def on_batch(loss):
        updates.append(loss)
        return ranks().root and len(updates) == 5
    history = model.fit(x, y, epochs=2, batch_size=4, seed=13, verbose=False,
                        distributed=True, on_batch=on_batch)
    assert len(updates) == 5, updates  # on every rank
    return model, history


def truncated_bptt():
    """Truncated BPTT in chunks of 3 steps over sequences of lengths 1-8, cross-entropy: the
    chunks stop at the global batch's longest sequence, and a rank whose sequences have all
    ended adds nothing to a chunk."""
    rng, x, lengths = data(18, 10, 8, 3)
    targets = rng.integers(0, 4, (10, 8))
    model = engine.Sequential([engine.LSTM(3, 5, batch_first=True, dtype="float64", seed=19),
                               engine.Dense(5, 4, dtype="float64", seed=20)])
    model.compile("cross_entropy", engine.Adam(lr=2e-2), clip_norm=1.0)
    history = model.fit(x, targets, epochs=2, batch_size=4, seed=21, lengths=lengths,
                        tbptt=3, verbose=False, distributed=True)
    return model, history


def ctc_subsampled():
    """The speech recognizer's stack: a bidirectional LSTM, frames stacked in pairs, CTC on
    transcripts of 0-2 labels (torch's mean over target lengths, then over the batch), with
    validation; 9 samples in batches of 4, each batch cut to its longest sequence."""
    rng, x, lengths = data(22, 12, 8, 3)
    lengths = np.maximum(lengths, 6)
    y = np.full((12, 2), -1)
    for i, L in enumerate(rng.integers(0, 3, 12)):
        y[i, :L] = rng.integers(1, 4, L)
    model = engine.Sequential([engine.LSTM(3, 4, batch_first=True, bidirectional=True,
                                           dtype="float64", seed=23),
                               engine.layers.Subsample(8, 2, dtype="float64"),
                               engine.Dense(16, 4, dtype="float64", seed=24)])
    model.compile("ctc", engine.Adam(lr=2e-2), clip_norm=1.0)
    history = model.fit(x[:9], y[:9], epochs=2, batch_size=4, seed=25, lengths=lengths[:9],
                        validation_data=(x[9:], y[9:], lengths[9:]), verbose=False,
                        distributed=True)
    return model, history


def stream_of_passes():
    """steps_per_epoch: 3 epochs of 2 batches of 4 over 11 samples, so the epochs run on
    across passes; every rank draws the same parts of the same stream."""
    rng, x, lengths = data(26, 11, 4, 2)
    y = rng.normal(size=(11, 2))
    model = engine.Sequential([engine.LSTM(2, 4, batch_first=True, dtype="float64", seed=27),
                               engine.Dense(4, 2, dtype="float64", seed=28)],
                              output="many_to_one")
    model.compile("mse", engine.Adam(lr=2e-2))
    history = model.fit(x, y, epochs=3, batch_size=4, seed=29, lengths=lengths,
                        steps_per_epoch=2, verbose=False, distributed=True)
    return model, history


def unseeded_ranks_draw_alike():
    """seed=None (with and without steps_per_epoch): each rank would draw its own order; the
    ranks must use rank 0's.  No weights are compared (the seed is random): the history
    records whether this rank's orders were rank 0's."""
    from engine import model as model_module

    orders, draw = [], model_module._epoch_order
    def spy(*args):
        orders.append(draw(*args))
        return orders[-1]
    model_module._epoch_order = spy
    try:
        rng, x, lengths = data(30, 9, 3, 2)
        model = engine.Sequential([engine.LSTM(2, 3, batch_first=True, dtype="float64",
                                               seed=31), engine.Dense(3, 1, dtype="float64")],
                                  output="many_to_one").compile("mse", engine.SGD(0.01))
        for steps in (None, 1):
            model.fit(x, x[:, -1, :1], epochs=2, batch_size=4, lengths=lengths,
                      steps_per_epoch=steps, verbose=False, distributed=True)
    finally:
        model_module._epoch_order = draw
    me = ranks()
    root = me.broadcast(orders)
    alike = np.array([len(root) == len(orders) == 4 and all(map(np.array_equal, root, orders))],
                     dtype=np.float64)
    me.allreduce_(alike)  # rank 0 saves the results: it must hear of every rank
    return None, {"same_orders_as_rank_0": alike[0] / me.size}


def gpu_backend(backend="gpu"):
    """The GPU backend (the CUDA simulator without a GPU: tiny), gradients reduced through
    host memory; 7 samples in batches of 3.  ``backend="cpu"``: the same on the CPU."""
    rng, x, lengths = data(14, 7, 3, 2)
    y = rng.normal(size=(7, 2))
    model = engine.Sequential([engine.LSTM(2, 3, batch_first=True, dtype="float64", seed=15,
                                           backend=backend),
                               engine.Dense(3, 2, dtype="float64", seed=16, backend=backend)],
                              output="many_to_one")
    model.compile("mse", engine.Adam(lr=5e-2), clip_norm=0.3)
    history = model.fit(x, y, epochs=1, batch_size=3, seed=17, lengths=lengths,
                        verbose=False, distributed=True)
    return model, history


CASES = {"many_to_one_packed": many_to_one_packed, "many_to_many_masked": many_to_many_masked,
         "stacked_dropout": stacked_dropout, "truncated_bptt": truncated_bptt,
         "ctc_subsampled": ctc_subsampled, "stream_of_passes": stream_of_passes,
         "unseeded_ranks_draw_alike": unseeded_ranks_draw_alike}
def gpu_backend_nccl_standin():
    """The GPU case with ENGINE_DIST_REDUCE=nccl: device buffers summed by
    engine.distributed.NcclReducer through tests/distributed/nccl_standin.py (MPI underneath);
    a layer's segment and the loss each take one allreduce, and every step ends waiting."""
    from tests.distributed import nccl_standin

    nccl_standin.install()
    model, history = gpu_backend("gpu")
    log = nccl_standin.log
    waits, sums = log.count(("wait", None)), sum(kind == "allreduce" for kind, _ in log)
    assert waits > 0 and log[-1][0] == "wait" and sums == waits * (len(model.layers) + 1), log
    return model, history


if os.environ.get("CASES_GPU") in ("gpu", "cpu"):  # the GPU case alone, on that backend
    CASES = {"gpu_backend": lambda: gpu_backend(os.environ["CASES_GPU"])}
    if os.environ.get("ENGINE_DIST_REDUCE") == "nccl":
        CASES = {"gpu_backend": gpu_backend_nccl_standin}


def main(out):
    fail_on = os.environ.get("FAIL_ON_RANK")
    me = ranks()
    if fail_on is not None and int(fail_on) == me.rank:
        calls = []

        def fail_later(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                if os.environ.get("FAIL_MODE") == "die":
                    os._exit(3)  # as a killed or crashed process: no Python cleanup
                raise RuntimeError("injected failure in the second step")
            return original(self, *args, **kwargs)
        original = engine.Sequential._update_on_ranks
        engine.Sequential._update_on_ranks = fail_later
    saved = {"ranks": me.size}
    for name, case in CASES.items():
        model, history = case()
        for key, value in ({} if model is None else model.state_dict()).items():
            saved[f"{name}/{key}"] = value
        for key, value in history.items():
            if key == "allreduce_seconds":  # a timing, only in distributed runs
                continue
            saved[f"{name}/history/{key}"] = np.asarray(value, dtype=np.float64)
    if me.root:
        np.savez(out, **saved)


if __name__ == "__main__":
    main(sys.argv[1])
