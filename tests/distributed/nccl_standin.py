"""A stand-in for CuPy's NCCL module and streams that sums over MPI, so that the NCCL
reduction of ``engine.distributed.NcclReducer`` runs under the CUDA simulator (NumPy arrays
standing in for CuPy's, their host addresses for device pointers).

It checks what real NCCL would need and could not report here: every rank joins with rank
0's unique id and its own rank; each allreduce is in place, of a float32/float64 buffer, a
sum, on the reducer's own stream, issued after that stream was made to wait for the compute
stream; and the compute stream waits for the reducer's stream before the sums are read.
"""
import ctypes
from types import SimpleNamespace

import numpy as np
from mpi4py import MPI

NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 7, 8, 0
CTYPES = {NCCL_FLOAT32: ctypes.c_float, NCCL_FLOAT64: ctypes.c_double}
log = []  # ("allreduce", count) and ("wait", None), in order


def get_unique_id():
    """Like CuPy's: a tuple of 128 small ints, different each call."""
    return tuple(int(v) for v in np.random.default_rng().integers(-128, 128, 128))


class Event:
    def __init__(self, stream):
        self.stream = stream


class Stream:
    made = {}  # ptr -> Stream

    def __init__(self, non_blocking=False, ptr=None):
        self.ptr = ptr if ptr is not None else id(self)
        self.waiting_for = None
        Stream.made[self.ptr] = self

    def record(self):
        return Event(self)

    def wait_event(self, event):
        self.waiting_for = event.stream
        if event.stream is not COMPUTE:  # the compute stream waits for the sums
            log.append(("wait", None))


COMPUTE = Stream(ptr=0)  # the default (legacy) stream, as CuPy's current stream
cuda = SimpleNamespace(Stream=Stream, get_current_stream=lambda: COMPUTE)


class NcclCommunicator:
    def __init__(self, ndev, comm_id, rank):
        world = MPI.COMM_WORLD
        ids = world.allgather(tuple(comm_id))
        if len(set(ids)) != 1 or ndev != world.Get_size() or rank != world.Get_rank():
            raise RuntimeError(f"ncclCommInitRank: ranks disagree: ndev {ndev}, rank {rank}")
        self.world = world

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        if sendbuf != recvbuf or op != NCCL_SUM or datatype not in CTYPES:
            raise RuntimeError(f"allReduce: expected in place, NCCL_SUM, float32/64; got "
                               f"{sendbuf}->{recvbuf}, op {op}, type {datatype}")
        on = Stream.made[stream]
        if on is COMPUTE:
            raise RuntimeError("allReduce on the compute stream: no overlap")
        if on.waiting_for is not COMPUTE:
            raise RuntimeError("allReduce not ordered after the compute stream's work")
        on.waiting_for = None  # the next one must wait again
        array = np.ctypeslib.as_array((CTYPES[datatype] * count).from_address(recvbuf))
        self.world.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
        log.append(("allreduce", count))


nccl = SimpleNamespace(get_unique_id=get_unique_id, NcclCommunicator=NcclCommunicator,
                       NCCL_FLOAT32=NCCL_FLOAT32, NCCL_FLOAT64=NCCL_FLOAT64, NCCL_SUM=NCCL_SUM)


def install():
    """Make ``engine.distributed`` build its NCCL reducers on this stand-in."""
    import engine.distributed

    engine.distributed._cupy_nccl = lambda: (nccl, cuda)
