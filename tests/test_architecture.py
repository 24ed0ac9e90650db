"""The architecture map, enforced from the source: which project package may import which, and
MLflow imported only in tracking/.

Every ``import`` and ``from ... import`` counts, at module level or inside a function (lazy
imports), under ``if TYPE_CHECKING`` too, with relative imports resolved. Not seen: imports by
string (``importlib.import_module``, Hydra's ``_target_``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The architecture map: package -> what it may import besides itself (a package, or one module
# of it). Dependencies run one way, from the sweepers down to the packages that import nothing
# of the project. training sees tracking only through the Tracker interface it logs to.
ALLOWED: dict[str, tuple[str, ...]] = {
    "hydra_plugins": ("sweep", "training", "data", "tracking", "models"),
    "sweep": ("training", "data", "tracking", "models"),
    # data: figure 4 starts the energy dynamics from the run's own test images (fig_energy.py)
    "analysis": ("tracking", "models", "data"),
    "training": ("data", "models", "tracking.tracker"),
    "tracking": (),
    "data": (),
    "models": (),
}
FREE = ("benchmarks",)  # scripts measuring the platform: may import any package
MLFLOW_HOME = "tracking"  # the only package that imports mlflow (tests aside)
PROJECT = (*ALLOWED, *FREE)


def project_files() -> list[Path]:
    """Every .py of the project outside tests/ and hidden folders (.venv, .git), relative."""
    files = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "tests" or any(p.startswith(".") for p in rel.parts):
            continue
        files.append(rel)
    return sorted(files)


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or path.is_dir()


def imported_modules(source: str, rel: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in ``source``, the file at ``rel`` (relative to the
    project root). ``from a.b import c`` is ``a.b.c`` when c is a module, else ``a.b``."""
    package = list(rel.parent.parts)
    found = []
    for node in ast.walk(ast.parse(source, str(rel))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub) else module))
    return list(dict.fromkeys(found))  # `from a import b, c`: one edge a when neither is a module


def forbidden_edges(source: str, rel: Path) -> list[str]:
    """Each import of ``source`` (the file at ``rel``) that the map does not allow."""
    pkg = rel.parts[0]
    if pkg in FREE or pkg not in ALLOWED:
        return []
    allowed = ALLOWED[pkg]
    out = []
    for line, module in imported_modules(source, rel):
        top = module.split(".")[0]
        if top not in PROJECT or top == pkg:
            continue
        if not any(module == a or module.startswith(a + ".") for a in allowed):
            out.append(f"{rel}:{line} imports {module} (allowed: {', '.join(allowed) or 'none'})")
    return out


def mlflow_imports(source: str, rel: Path) -> list[str]:
    """Each import of mlflow in ``source`` (the file at ``rel``) outside tracking/."""
    if rel.parts[0] == MLFLOW_HOME:
        return []
    return [f"{rel}:{line} imports {module}" for line, module in imported_modules(source, rel)
            if module.split(".")[0] == "mlflow"]


def test_every_package_is_on_the_map() -> None:
    folders = {rel.parts[0] for rel in project_files() if len(rel.parts) > 1}
    assert folders <= set(PROJECT), \
        f"add {sorted(folders - set(PROJECT))} to ALLOWED (or FREE) in {Path(__file__).name}"
    assert all(len(rel.parts) > 1 for rel in project_files()), "a .py at the project root"


def test_mlflow_is_imported_only_in_tracking() -> None:
    found = [hit for rel in project_files()
             for hit in mlflow_imports((ROOT / rel).read_text(), rel)]
    assert not found, ("MLflow belongs to tracking/ (its client factory, parent run, run store); "
                       "use those instead:\n" + "\n".join(found))


def test_imports_follow_the_architecture_map() -> None:
    found = [edge for rel in project_files()
             for edge in forbidden_edges((ROOT / rel).read_text(), rel)]
    assert not found, "imports against the architecture map:\n" + "\n".join(found)


def test_the_checker_sees_forbidden_and_lazy_imports() -> None:
    # a sweep import in models/, wherever it is written, is reported with its file and line
    source = ("import torch\n"
              "from models.mlp import MLP_KINDS\n"
              "def build():\n"
              "    from sweep.task import run_task\n"
              "    import mlflow.tracking\n")
    assert forbidden_edges(source, Path("models/x.py")) == [
        "models/x.py:4 imports sweep.task (allowed: none)"]
    assert mlflow_imports(source, Path("models/x.py")) == ["models/x.py:5 imports mlflow.tracking"]
    assert mlflow_imports(source, Path("tracking/x.py")) == []
    # training sees the Tracker interface only, not the rest of tracking/
    assert forbidden_edges("from tracking.tracker import Tracker\n", Path("training/x.py")) == []
    assert forbidden_edges("from tracking import client\n", Path("training/x.py")) == [
        "training/x.py:1 imports tracking.client (allowed: data, models, tracking.tracker)"]
    # relative imports resolve inside the package, `from pkg import module` to the module
    assert imported_modules("from .client import open_client\nfrom . import retry\n",
                            Path("tracking/x.py")) == [(1, "tracking.client"),
                                                       (2, "tracking.retry")]
    # analysis may read the store, not reach the sweepers
    assert forbidden_edges("from tracking import run_store\nimport sweep.mlflow_parent\n",
                           Path("analysis/x.py")) == [
        "analysis/x.py:2 imports sweep.mlflow_parent (allowed: tracking, models, data)"]
    # benchmarks may import anything
    assert forbidden_edges("from sweep.task import run_task\n", Path("benchmarks/x.py")) == []


def test_the_job_and_its_config_check_import_no_mlflow_before_tracking_starts() -> None:
    """MLflow (about 2 s to import) loads only when a job opens its tracker: a job with
    tracking disabled, and every config check, never pay for it (issue 17, job start)."""
    import subprocess
    import sys

    code = ("import sys; import sweep.task, sweep.validate, sweep.run; "
            "print('mlflow' in sys.modules, 'optuna' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out == ["False", "False"], out
