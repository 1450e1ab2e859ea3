"""Checkpoint then resume, each half on its own number of ranks.

    [mpiexec -n R1] python tests/distributed/resume.py first CKPT
    [mpiexec -n R2] python tests/distributed/resume.py second CKPT OUT.npz

The first half trains one epoch and saves (rank 0 writes); the second loads the checkpoint
(weights, Adam's moments, the epoch counter) and trains two more epochs; rank 0 writes the
final weights and history to OUT.npz.
"""
import sys

import numpy as np

import engine
from engine.distributed import ranks


def data():
    rng = np.random.default_rng(20)
    x = rng.normal(size=(17, 6, 3))
    return x, rng.normal(size=(17, 2)), rng.integers(1, 7, 17)


def main(part, ckpt, out=None):
    x, y, lengths = data()
    if part == "first":
        model = engine.Sequential([engine.LSTM(3, 5, batch_first=True, dtype="float64",
                                               seed=21),
                                   engine.Dense(5, 2, dtype="float64", seed=22)],
                                  output="many_to_one")
        model.compile("mse", engine.Adam(lr=2e-2), clip_norm=1.0)
        model.fit(x, y, epochs=1, batch_size=4, seed=23, lengths=lengths, verbose=False,
                  distributed=True)
        model.save(ckpt, distributed=True)
        return
    model = engine.load(ckpt)
    history = model.fit(x, y, epochs=2, batch_size=4, seed=23, lengths=lengths,
                        verbose=False, distributed=True)
    if ranks().root:
        np.savez(out, ranks=ranks().size, epoch=model.epoch, loss=history["loss"],
                 **model.state_dict())


if __name__ == "__main__":
    main(*sys.argv[1:])
