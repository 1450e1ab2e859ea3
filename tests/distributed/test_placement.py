"""Which GPU a rank uses and how its gradients are summed: single-process checks of the
rules that tests/distributed/test_distributed.py runs under mpiexec."""
import numpy as np
import pytest

from engine import distributed
from engine.distributed import device_for_rank, local_rank, reduce_mode


@pytest.fixture
def clean_env(monkeypatch):
    for name in distributed.LOCAL_RANK_VARIABLES + ("ENGINE_DIST_REDUCE",):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("variable", distributed.LOCAL_RANK_VARIABLES)
def test_local_rank_read_from_each_launcher(clean_env, variable):
    clean_env.setenv(variable, "5")
    assert local_rank() == 5
    assert [device_for_rank(n) for n in (1, 2, 4, 8)] == [0, 1, 1, 5]


def test_alone_a_process_is_local_rank_0_on_device_0(clean_env):
    assert local_rank() == 0 and device_for_rank(4) == 0
    clean_env.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "not a number")
    assert local_rank() == 0


def test_ranks_of_a_machine_spread_over_its_gpus():
    devices = [device_for_rank(3, rank) for rank in range(7)]
    assert devices == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(ValueError, match="n_devices"):
        device_for_rank(0, 1)


class FakeBackend:
    def __init__(self, name, simulated=False):
        self.name, self.simulated = name, simulated


def test_reduce_mode_nccl_only_on_real_gpus(clean_env):
    assert reduce_mode(FakeBackend("cpu")) == "mpi"
    assert reduce_mode(FakeBackend("gpu", simulated=True)) == "mpi"
    assert reduce_mode(FakeBackend("gpu")) == "nccl"
    clean_env.setenv("ENGINE_DIST_REDUCE", "mpi")
    assert reduce_mode(FakeBackend("gpu")) == "mpi"
    clean_env.setenv("ENGINE_DIST_REDUCE", "nccl")
    assert reduce_mode(FakeBackend("gpu", simulated=True)) == "nccl"
    with pytest.raises(ValueError, match="needs backend='gpu'"):
        reduce_mode(FakeBackend("cpu"))
    clean_env.setenv("ENGINE_DIST_REDUCE", "gloo")
    with pytest.raises(ValueError, match="mpi or nccl, got 'gloo'"):
        reduce_mode(FakeBackend("cpu"))


def test_gradient_buffer_of_one_rank_is_the_mean():
    """One rank: the buffer hands back the gradients it was given, divided by the count."""
    import engine

    model = engine.Sequential([engine.LSTM(2, 3, dtype="float64", seed=0),
                               engine.Dense(3, 1, dtype="float64", seed=1)])
    ranks = distributed.Ranks(None)
    rng = np.random.default_rng(2)
    for layer in model.layers:
        layer.grads = {k: rng.normal(size=p.shape) for k, p in layer.params.items()}
    buf = distributed.GradientBuffer(model.layers, np.float64, ranks, model.backend)
    for i in reversed(range(len(model.layers))):
        buf.add_layer(i, 4)
    grads, loss, count = buf.finish(0.75, 4)
    assert (loss, count) == (0.75, 4.0)
    for i, layer in enumerate(model.layers):
        for k, g in layer.grads.items():
            np.testing.assert_allclose(grads[f"{i}.{k}"], g, rtol=1e-15)


def test_gpu_backend_computes_on_its_ranks_device():
    """The GPU backend takes device local_rank % devices (in the simulator: one device)."""
    from numba import cuda

    from engine.backends.gpu import GPUBackend

    backend = GPUBackend()
    assert backend.device == device_for_rank(len(cuda.gpus)) == 0


class FakeComm:
    def __init__(self, keys):
        self.keys = keys

    def allgather(self, key):
        return self.keys


@pytest.mark.parametrize("keys, want", [
    ([("a", "0000:01:00.0"), ("a", "0000:02:00.0"), ("b", "0000:01:00.0")], "nccl"),
    ([("a", "0000:01:00.0"), ("a", "0000:01:00.0")], "mpi")])
def test_ranks_sharing_a_gpu_sum_through_mpi(clean_env, monkeypatch, keys, want):
    """NCCL wants a GPU per rank: two ranks on one GPU (same host and PCI bus) fall back to
    MPI with a warning, unless ENGINE_DIST_REDUCE names NCCL."""
    made = []
    monkeypatch.setattr(distributed, "device_key", lambda backend: keys[0])
    monkeypatch.setattr(distributed, "NcclReducer", lambda ranks: made.append("nccl"))
    monkeypatch.setattr(distributed, "MpiReducer", lambda ranks: made.append("mpi"))
    ranks = distributed.Ranks(None)
    ranks.comm, ranks.size = FakeComm(keys), len(keys)
    if want == "mpi":
        with pytest.warns(RuntimeWarning, match="2 ranks share 1 GPU"):
            distributed.make_reducer(ranks, FakeBackend("gpu"))
    else:
        distributed.make_reducer(ranks, FakeBackend("gpu"))
    clean_env.setenv("ENGINE_DIST_REDUCE", "nccl")
    distributed.make_reducer(ranks, FakeBackend("gpu"))
    assert made == [want, "nccl"]
