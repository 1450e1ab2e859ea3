"""Synchronous data-parallel training on MPI (``mpi4py`` with Open MPI or any MPI).

    mpiexec -n 4 python train.py          # train.py calls model.fit(..., distributed=True)

Every rank runs the same script on the same data.  ``Sequential.fit(..., distributed=True)``
then trains as one process would on the same global batches:

- rank 0's weights and optimizer state are broadcast before the first step;
- every rank draws the same shuffle, and takes its own contiguous share of each global batch
  (``Ranks.share``: shares differ by at most one sample, and a rank may get none when the
  batch has fewer samples than there are ranks; no sample is dropped);
- each rank's gradients and loss, weighted by its number of loss terms, are summed in place
  over one contiguous buffer (Horovod's tensor fusion), then divided by the global count; the
  optimizer updates from views of that buffer, so every rank makes the same update.  Each
  layer's segment starts its non-blocking allreduce as soon as the backward leaves that
  layer, overlapping the backward of the layers below (``ENGINE_ALLREDUCE_OVERLAP=0``: one
  blocking allreduce of the whole buffer after the backward instead);
- dropout masks are drawn for the whole global batch on every rank (rank 0's generator state
  is broadcast first) and sliced to the rank's share, so they do not depend on the number of
  ranks;
- validation losses are reduced the same way; progress bars and reports come from rank 0.

The sums run in another order than one process's, so results agree to rounding (about 1e-15
relative in float64), not bit for bit.

On GPUs each rank computes on device ``local_rank % devices`` (``device_for_rank``; the GPU
backend selects it when first made), and the step's buffer stays on the device, summed by NCCL
through CuPy (``NcclReducer``); ``ENGINE_DIST_REDUCE=mpi`` sums through host memory instead.

A rank runs no more Numba threads than the cores it is bound to (``threads_within_binding``):
Open MPI binds each rank to one core unless started with ``--bind-to none`` or ``--map-by
slot:PE=k``.  A script started without ``mpiexec`` (or without mpi4py installed) is one rank
of one: it trains as a single process.  A rank that raises in ``fit`` prints its rank and the
error and calls MPI_Abort, which ends every rank, rather than leaving the others waiting in an
allreduce.
"""
import os
import sys
import time
import traceback

import numpy as np


class Ranks:
    """This process's place among the ranks of one job, and the collectives ``fit`` uses.

    ``comm`` is an mpi4py communicator, or None for a single process.
    """

    def __init__(self, comm=None, overlap=True):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self.overlap = overlap  # start each layer's allreduce as its backward ends

    def __repr__(self):
        return f"Ranks(rank={self.rank}, size={self.size})"

    @property
    def root(self):
        """Whether this is rank 0, the one that reports and writes files."""
        return self.rank == 0

    def bounds(self, n):
        """(first, end) of this rank's share of n items: contiguous, sizes differing by at
        most one, in rank order."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def share(self, rows):
        """This rank's contiguous share of ``rows`` (a global batch's sample indices)."""
        lo, hi = self.bounds(len(rows))
        return rows[lo:hi]

    def allreduce_(self, buf):
        """Sum the contiguous NumPy array ``buf`` over the ranks, in place."""
        if self.size > 1:
            from mpi4py import MPI

            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return buf

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (small Python objects: states, flags)."""
        return obj if self.size == 1 else self.comm.bcast(obj, root=0)

    def barrier(self):
        if self.size > 1:
            self.comm.Barrier()

    def abort(self, error):
        """Report ``error`` (its traceback, then one line naming this rank) and end every rank
        of the job (MPI_Abort)."""
        traceback.print_exception(error, file=sys.stderr)
        print(f"error: rank {self.rank} of {self.size}: {type(error).__name__}: {error}; "
              "stopping every rank (MPI_Abort)", file=sys.stderr, flush=True)
        self.comm.Abort(1)


def threads_within_binding(ranks):
    """Numba threads no more than the cores this rank may run on: Open MPI binds each rank to
    one core by default, where NUMBA_NUM_THREADS threads would take turns on that core.
    Lowers the count (with a warning naming the fix) and returns it."""
    import warnings

    import numba

    if not hasattr(os, "sched_getaffinity"):
        return numba.get_num_threads()
    cores, threads = len(os.sched_getaffinity(0)), numba.get_num_threads()
    if cores < threads:
        numba.set_num_threads(cores)
        if ranks.root:
            warnings.warn(f"rank {ranks.rank} may run on {cores} core(s) but has {threads} "
                          f"threads: using {cores}; start mpiexec with --bind-to none or "
                          f"--map-by slot:PE={threads} to give each rank {threads} cores",
                          RuntimeWarning, stacklevel=3)
    return numba.get_num_threads()


def ranks():
    """The job's Ranks: MPI's COMM_WORLD when mpi4py is installed, else a single process."""
    try:
        from mpi4py import MPI
    except ImportError:
        return Ranks(None)
    comm = MPI.COMM_WORLD
    overlap = os.environ.get("ENGINE_ALLREDUCE_OVERLAP", "1") != "0"
    return Ranks(comm if comm.Get_size() > 1 else None, overlap)


def as_ranks(distributed):
    """``fit``'s ``distributed`` argument as Ranks, or None for plain single-process training:
    False/None, True (this job's ranks) or a Ranks."""
    if distributed is None or distributed is False:
        return None
    if distributed is True:
        return ranks()
    if isinstance(distributed, Ranks):
        return distributed
    raise TypeError(f"distributed must be True, False or an engine.distributed.Ranks, got "
                    f"{type(distributed).__name__}")


def local_rank():
    """This rank's index among the ranks on its machine, from the launcher's environment
    (Open MPI, MPICH/Hydra, Slurm, torchrun-style LOCAL_RANK); 0 when none says."""
    for name in LOCAL_RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


LOCAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID",
                        "LOCAL_RANK")


def device_for_rank(n_devices, rank=None):
    """The GPU a rank uses: its local rank modulo the devices it can see, so the ranks on one
    machine spread over its GPUs (with CUDA_VISIBLE_DEVICES set per rank, each sees one)."""
    if n_devices < 1:
        raise ValueError(f"n_devices must be >= 1, got {n_devices}")
    return (local_rank() if rank is None else rank) % n_devices


def reduce_mode(backend):
    """How a step's gradients are summed: "nccl" (device buffers, NCCL through CuPy) on real
    GPUs, else "mpi" (a host buffer, MPI); ``ENGINE_DIST_REDUCE=mpi|nccl`` overrides."""
    mode = os.environ.get("ENGINE_DIST_REDUCE", "")
    if mode not in ("", "mpi", "nccl"):
        raise ValueError(f"ENGINE_DIST_REDUCE must be mpi or nccl, got {mode!r}")
    if mode:
        if mode == "nccl" and backend.name != "gpu":
            raise ValueError("ENGINE_DIST_REDUCE=nccl needs backend='gpu'")
        return mode
    return "nccl" if backend.name == "gpu" and not backend.simulated else "mpi"


class MpiReducer:
    """Sums host (NumPy) buffers over the ranks with non-blocking MPI allreduces."""

    on_device = False

    def __init__(self, ranks):
        self.ranks, self.requests = ranks, []

    def start(self, buf):
        from mpi4py import MPI

        self.requests.append(self.ranks.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM))

    def wait(self):
        from mpi4py import MPI

        MPI.Request.Waitall(self.requests)
        self.requests = []


def _cupy_nccl():
    import cupy
    from cupy.cuda import nccl

    return nccl, cupy.cuda


class NcclReducer:
    """Sums device buffers over the ranks with NCCL (``cupy.cuda.nccl``), its unique id sent
    from rank 0 over MPI.  The allreduces run in order on a stream of their own, each after
    the work queued so far on the compute stream (so a layer's sum overlaps the backward of
    the layers below); ``wait`` makes the compute stream wait for them all.

    ``nccl`` and ``cuda`` are CuPy's modules (``_cupy_nccl``; the simulator tests put a
    stand-in that sums over MPI in its place).
    """

    on_device = True

    def __init__(self, ranks):
        self.nccl, self.cuda = _cupy_nccl()
        uid = ranks.broadcast(self.nccl.get_unique_id() if ranks.root else None)
        self.comm = self.nccl.NcclCommunicator(ranks.size, uid, ranks.rank)
        self.stream = self.cuda.Stream(non_blocking=True)
        self.types = {np.dtype(np.float32): self.nccl.NCCL_FLOAT32,
                      np.dtype(np.float64): self.nccl.NCCL_FLOAT64}

    def start(self, buf):
        self.stream.wait_event(self.cuda.get_current_stream().record())
        at = _device_pointer(buf)
        self.comm.allReduce(at, at, buf.size, self.types[buf.dtype], self.nccl.NCCL_SUM,
                            self.stream.ptr)

    def wait(self):
        self.cuda.get_current_stream().wait_event(self.stream.record())


def _device_pointer(a):
    """A CuPy array's device address (a NumPy array's host address where NumPy stands in for
    CuPy, in the simulator)."""
    data = a.data
    return data.ptr if hasattr(data, "ptr") else a.ctypes.data


def device_key(backend):
    """(host name, PCI bus id) of the GPU this rank computes on: equal for two ranks on one
    GPU, whatever CUDA_VISIBLE_DEVICES numbers it."""
    import socket

    import cupy

    return socket.gethostname(), cupy.cuda.Device(backend.device).pci_bus_id


def make_reducer(ranks, backend):
    """The reducer ``reduce_mode`` names; where it chose NCCL by default but two ranks share a
    GPU (NCCL wants one GPU per rank), MPI through host memory, with a warning."""
    mode = reduce_mode(backend)
    if mode == "nccl" and not os.environ.get("ENGINE_DIST_REDUCE"):
        keys = ranks.comm.allgather(device_key(backend))
        if len(set(keys)) < len(keys):
            if ranks.root:
                import warnings

                warnings.warn(f"{len(keys)} ranks share {len(set(keys))} GPU(s); NCCL needs a "
                              "GPU per rank: summing gradients with MPI through host memory",
                              RuntimeWarning, stacklevel=3)
            mode = "mpi"
    return NcclReducer(ranks) if mode == "nccl" else MpiReducer(ranks)


class GradientBuffer:
    """One contiguous buffer holding every parameter's gradient, then the loss and the count
    of loss terms: the buffer of the step's allreduce.  It lives on the host and MPI sums it,
    or, on GPUs, on the device and NCCL sums it (``reduce_mode``).

    Each layer's gradients form one contiguous segment.  With ``overlap`` a layer's segment
    starts its (non-blocking) allreduce as soon as the backward leaves that layer, while the
    layers below it are still in theirs; ``finish`` waits for all of them.  Without, ``finish``
    sums the whole buffer in one allreduce.
    """

    def __init__(self, layers, dtype, ranks, backend):
        self.layers, self.ranks, self.backend = layers, ranks, backend
        sizes = [sum(int(np.prod(p.shape)) for p in layer.params.values()) for layer in layers]
        self.layer_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.reducer = make_reducer(ranks, backend)
        self.xp = backend.xp if self.reducer.on_device else np
        self.buf = self.xp.zeros(int(self.layer_offsets[-1]) + 2, dtype=np.float64 if dtype ==
                                 np.float64 else np.float32)
        self.seconds = 0.0  # spent waiting for allreduces (the slowest rank included)

    def add_layer(self, index, count):
        """Put ``count`` x the gradients of layer ``index`` (zeros for a count of 0: a rank
        with no loss term) into its segment; with overlap, start that segment's allreduce."""
        lo, hi = self.layer_offsets[index], self.layer_offsets[index + 1]
        segment = self.buf[lo:hi]
        if count == 0:
            segment[:] = 0
        else:
            layer, at = self.layers[index], 0
            for name, p in layer.params.items():
                n = int(np.prod(p.shape))
                grad = layer.grads[name]
                grad = grad if self.reducer.on_device else self.backend.to_numpy(grad)
                self.xp.multiply(grad.reshape(-1), count, out=segment[at:at + n])
                at += n
        if self.ranks.overlap and self.ranks.size > 1 and hi > lo:
            self.reducer.start(segment)

    def finish(self, loss, count):
        """Sum the loss terms and count (and, without overlap, everything) over the ranks;
        wait for the layers' allreduces.  Returns (the global mean gradients, keyed like
        ``Sequential.grads``, as views of the buffer; the global mean loss; the global count).
        """
        buf, backend = self.buf, self.backend
        buf[-2:] = self.xp.asarray([loss * count, count], dtype=buf.dtype)
        start = time.perf_counter()
        if self.ranks.size > 1:
            self.reducer.start(buf[-2:] if self.ranks.overlap else buf)
            self.reducer.wait()
        tail = backend.to_numpy(buf[-2:]) if self.reducer.on_device else buf[-2:]
        totals = np.array(tail, dtype=np.float64)  # a copy; one device sync a step
        self.seconds += time.perf_counter() - start
        total = totals[1]
        buf[:-1] /= total
        to_device = backend.name != "cpu" and not self.reducer.on_device
        grads = {}
        for i, layer in enumerate(self.layers):
            at = self.layer_offsets[i]
            for name, p in layer.params.items():
                n = int(np.prod(p.shape))
                view = buf[at:at + n].reshape(p.shape)
                grads[f"{i}.{name}"] = backend.asarray(view) if to_device else view
                at += n
        return grads, float(totals[0] / total), float(total)
