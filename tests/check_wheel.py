"""The package as users install it: build the wheel, install it (not editable) into a fresh
throw-away venv, and use it from outside the repository.  ``make test`` runs this after pytest.

    python tests/check_wheel.py [--keep DIR]

Checks, each failing with a message that says what is wrong:
- the wheel holds every module of ``engine/`` and ``kernels/`` (the latter as
  ``engine/kernels/``), the bundled data with its PROVENANCE.md, and nothing from ``tests/``,
  ``bench/`` or ``examples/``, and no top-level ``kernels`` package;
- in the fresh venv: ``lstm-engine --help`` runs, ``import engine`` imports the installed copy,
  and a tiny forward matches NumPy's reference;
- Numba caches the installed kernels beside them (``engine/kernels/__pycache__``), stamped
  with their sources' digest.

The fresh venv gets the dependencies of the project's own ``.venv`` through a ``.pth`` path
(a path line only: .venv's ``.pth`` files, the editable install among them, are not run), so
the check needs no download beyond the build backend.
"""
import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FORWARD = """
import numpy as np, engine
from engine.kernels.reference import lstm_fwd_reference
rng = np.random.default_rng(0)
m = engine.LSTM(3, 5, seed=0)
x = rng.standard_normal((4, 2, 3)).astype(np.float32)
out, _ = m(x)
p = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
want = lstm_fwd_reference(x.astype(np.float64), np.zeros((2, 5)), np.zeros((2, 5)),
                          p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"],
                          p["bias_hh_l0"])[0]
assert np.abs(out - want).max() < 1e-5, np.abs(out - want).max()
print(engine.__file__)
"""


def fail(message):
    print(f"check_wheel: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def run(cmd, cwd, env=None, **kw):
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        fail(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout}{p.stderr}")
    return p.stdout


def build_wheel(out):
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
        cwd=out)
    wheels = list(out.glob("lstm_engine-*.whl"))
    if len(wheels) != 1:
        fail(f"expected one wheel in {out}, found {wheels}")
    return wheels[0]


def expected_files():
    """Every file the wheel must hold, as wheel paths."""
    want = {str(p.relative_to(REPO)) for p in (REPO / "engine").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}
    want |= {f"engine/kernels/{p.name}" for p in (REPO / "kernels").glob("*.py")}
    return want


def check_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = expected_files() - names
    if missing:
        fail(f"the wheel lacks {sorted(missing)} (pyproject.toml's packages/package-data)")
    stray = sorted(n for n in names if n.split("/")[0] in ("tests", "bench", "examples",
                                                          "kernels"))
    if stray:
        fail(f"the wheel carries files that are not the package's: {stray}")
    if "engine/apps/data/PROVENANCE.md" not in names:
        fail("the bundled data's PROVENANCE.md is not in the wheel")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        fail("the wheel lacks the LICENSE file (pyproject.toml's license-files)")
    print(f"check_wheel: {wheel.name}: {len(names)} files, every module and data file, "
          f"the licence, nothing from tests/, bench/, examples/")


def make_venv(root):
    """A fresh venv whose site-packages sees .venv's dependencies after its own."""
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=root)
    py = venv / "bin" / "python"
    site = run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               cwd=root).strip()
    Path(site, "zz_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv, Path(site)


def check_installed(wheel, root):
    venv, site = make_venv(root)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR", "VIRTUAL_ENV")}
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         str(wheel)], cwd=root, env=env)
    away = root / "elsewhere"  # not the repository: its engine/ must not be importable
    away.mkdir()
    help_text = run([str(venv / "bin" / "lstm-engine"), "--help"], cwd=away, env=env)
    if "forecast" not in help_text:
        fail(f"lstm-engine --help does not list the commands:\n{help_text}")
    where = run([str(venv / "bin" / "python"), "-c", FORWARD], cwd=away, env=env).strip()
    if not where.startswith(str(site)):
        fail(f"import engine found {where}, not the wheel installed in {site}")
    cache = site / "engine" / "kernels" / "__pycache__"
    cached = [n for n in os.listdir(cache) if n.endswith(".nbi")] if cache.is_dir() else []
    if not cached or not (cache / "sources.sha256").is_file():
        fail(f"Numba did not cache the installed kernels in {cache}")
    print(f"check_wheel: installed in a fresh venv: lstm-engine --help, import engine "
          f"({where}), a forward matching the reference; {len(cached)} kernels cached beside "
          f"the installed sources")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="work in DIR and keep it (default: a temporary "
                    "directory, removed afterwards)")
    args = ap.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="lstm-engine-wheel-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        wheel = build_wheel(root)
        check_contents(wheel)
        check_installed(wheel, root)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
