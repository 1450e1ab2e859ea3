"""The tree shows the architecture, and the import graph keeps it: the kernels never import the
engine, the library never imports the applications, ``import engine`` loads neither the
applications nor matplotlib, every backend implements the whole protocol, and the README's
Layout table names what is there."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import engine
from engine.backends import Backend, CPUBackend, get_backend
from engine.backends.gpu import GPUBackend

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "engine"
KERNELS = REPO / "kernels"


def _imports(path, package):
    """Absolute names of the modules a source file imports (relative imports resolved against
    ``package``, the file's package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] \
                if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


def _library_files():
    """(path, package) of every engine module outside engine/apps (the library), but for
    ``engine/__main__.py``: ``python -m engine`` is the command line's entry, a shim that
    imports ``engine.apps.cli``."""
    for path in sorted(ENGINE.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        if "apps" in rel.parts or rel.name == "__main__":
            continue
        yield path, ".".join(rel.parts[:-1])


def test_kernels_never_import_the_engine():
    for path in sorted(KERNELS.glob("*.py")):
        bad = {n for n in _imports(path, "engine.kernels")
               if n == "engine" or (n.startswith("engine.") and
                                    not n.startswith("engine.kernels"))}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_library_never_imports_the_applications():
    files = list(_library_files())
    assert any(p.name == "lstm.py" for p, _ in files)
    for path, package in files:
        bad = {n for n in _imports(path, package) if n.startswith("engine.apps")}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_import_engine_loads_no_application_or_plotting_module():
    code = ("import engine, sys; print(sorted(m for m in sys.modules "
            "if m.startswith(('engine', 'matplotlib'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    loaded = ast.literal_eval(out.strip().splitlines()[-1])
    assert "engine.lstm" in loaded and "engine.kernels.gemm" in loaded
    assert not [m for m in loaded if m.startswith(("engine.apps", "matplotlib"))], loaded


@pytest.mark.parametrize("cls", [CPUBackend, GPUBackend])
def test_backends_implement_the_whole_protocol(cls):
    assert issubclass(cls, Backend)
    assert not cls.__abstractmethods__, sorted(cls.__abstractmethods__)
    abstract = {n for n, f in vars(Backend).items() if getattr(f, "__isabstractmethod__", 0)}
    assert abstract >= {"seq_fwd", "seq_bwd", "matmul", "all_finite", "scatter_add"}
    assert all(n in vars(cls) for n in abstract)


def test_get_backend_takes_an_instance_as_is():
    cpu = CPUBackend()
    assert get_backend(cpu) is cpu
    with pytest.raises(ValueError, match="backend must be one of"):
        get_backend(object())


def test_the_kernels_install_under_engine():
    assert engine.kernels.__name__ == "engine.kernels"
    assert Path(engine.kernels.__file__).resolve() == KERNELS / "__init__.py"
    assert "kernels" not in sys.modules  # no top-level name that another project could own


def _layout_paths():
    """The paths in the first column of the README's Layout table."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return [m.group(1) for m in re.finditer(r"^\| `([^`]+)`", section, re.M)]


def test_readme_layout_names_every_module_and_nothing_else():
    named = _layout_paths()
    assert named, "no Layout table in README.md"
    for path in named:
        assert (REPO / path.rstrip("/")).exists(), f"README Layout names {path}, not in the tree"
    modules = [p for p in sorted(ENGINE.rglob("*.py")) + sorted(KERNELS.glob("*.py"))
               if p.name != "__init__.py"]
    for path in modules:
        rel = str(path.relative_to(REPO))
        folder = str(path.parent.relative_to(REPO)) + "/"
        assert rel in named or (folder in named and path.stem in _row(folder)), \
            f"{rel} is missing from the README's Layout table"


def _row(folder):
    """The text of the Layout table's row for ``folder``."""
    text = (REPO / "README.md").read_text()
    return next(line for line in text.splitlines() if line.startswith(f"| `{folder}`"))
