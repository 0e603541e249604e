"""Import layering, checked by an AST scan (no module is imported to find its imports).

- only ``mlvis/app/`` (plus ``app.py`` and ``pages/``) imports Streamlit;
- ``mlvis/viz`` imports neither the attack code (``mlvis.attacks``) nor the Streamlit glue;
- ``app.py`` and the pages import only ``mlvis.app``, ``mlvis.viz``, the public ``mlvis`` API,
  Streamlit, plotly, numpy, pandas and the standard library;
- ``mlvis/app/__init__.py`` imports nothing, so ``import mlvis.app`` stays cheap;
- nothing in the library outside ``mlvis/app/`` imports the glue (``mlvis/cli.py`` included: the recipe the CLI
  reruns lives in ``mlvis.recipe``);
- no module imports another module's private (``_``-prefixed) names.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import mlvis

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mlvis"
PAGE_FILES = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]
PAGE_THIRD_PARTY = {"streamlit", "plotly", "numpy", "pandas"}
PUBLIC = set(mlvis.__all__)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, root: Path = ROOT) -> list[tuple[str, tuple[str, ...]]]:
    """``(module, names)`` for every import in the file ``path`` (see ``source_imports``)."""
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    return source_imports(path.read_text(), package, str(path))


def source_imports(source: str, package: list[str], filename: str = "<src>") -> list[tuple[str, tuple[str, ...]]]:
    """``(module, names)`` for every import in ``source``: ``import a.b`` -> ``("a.b", ())``,
    ``from a import b, c`` -> ``("a", ("b", "c"))``. Relative imports are resolved against
    ``package`` (the importing module's package, as parts), and ``importlib.import_module("x")`` /
    ``__import__("x")`` with a constant name count as ``import x``."""
    tree = ast.parse(source, filename=filename)
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((module, tuple(alias.name for alias in node.names)))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if fname in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.args[0].value, ()))
    return found


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module ``path`` may pull in: ``from a import b`` counts as both ``a`` and ``a.b``."""
    out = set()
    for module, names in imports(path, root):
        out.add(module)
        out.update(f"{module}.{n}" for n in names if n != "*")
    return out


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def streamlit_violations(files: list[Path], root: Path = ROOT) -> list[str]:
    return [
        f"{f.relative_to(root)} imports {m}"
        for f in files
        for m in sorted(imported_modules(f, root))
        if within(m, "streamlit")
    ]


def page_violations(imported: list[tuple[str, tuple[str, ...]]], name: str) -> list[str]:
    bad = []
    for module, names in imported:
        top = module.split(".")[0]
        if top in PAGE_THIRD_PARTY or top in sys.stdlib_module_names or module == "__future__":
            continue
        if within(module, "mlvis.app") or within(module, "mlvis.viz"):
            continue
        if module == "mlvis" and all(n in PUBLIC or n in ("app", "viz") for n in names):
            continue  # import mlvis / from mlvis import <public name>
        if module.count(".") == 1 and module.split(".")[1] in PUBLIC:
            continue  # a public submodule such as mlvis.data
        bad.append(f"{name} imports {module}" + (f" ({', '.join(names)})" if names else ""))
    return bad


def library_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if ".venv" not in p.parts)


def test_the_scan_sees_the_files():
    files = library_files()
    assert len(files) >= 10
    assert PACKAGE / "viz" / "gallery.py" in files
    assert ROOT / "pages" / "home.py" in PAGE_FILES
    # the scanner finds what the app glue really imports
    assert "streamlit" in imported_modules(PACKAGE / "app" / "cache.py")
    assert "mlvis.app.state" in imported_modules(PACKAGE / "app" / "widgets.py")


def test_only_the_app_glue_imports_streamlit():
    outside_glue = [p for p in library_files() if not p.is_relative_to(PACKAGE / "app")]
    assert streamlit_violations(outside_glue) == []


def test_viz_imports_no_attack_code_and_no_streamlit_glue():
    files = sorted((PACKAGE / "viz").rglob("*.py"))
    assert files
    bad = [
        f"{f.relative_to(ROOT)} imports {m}"
        for f in files
        for m in sorted(imported_modules(f))
        if within(m, "mlvis.attacks") or within(m, "mlvis.app")
    ]
    assert bad == []


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_import_only_the_app_glue_viz_and_public_api(path):
    assert page_violations(imports(path), str(path.relative_to(ROOT))) == []


def test_app_package_init_imports_nothing():
    assert imports(PACKAGE / "app" / "__init__.py") == []


def glue_violations(files: list[Path], root: Path = ROOT) -> list[str]:
    return [
        f"{f.relative_to(root)} imports {m}"
        for f in files
        for m in sorted(imported_modules(f, root))
        if within(m, "mlvis.app")
    ]


# the one known exception, removed by the atomic-write consolidation (one atomic write for the code base)
PRIVATE_ALLOWED: set[str] = set()


def private_violations(files: list[Path], root: Path = ROOT) -> list[str]:
    """``from mlvis.x import _name`` in a module other than ``mlvis.x`` (and ``mlvis.x._private`` modules)."""
    bad = []
    for f in files:
        own = module_name(f, root)
        for module, names in imports(f, root):
            if not within(module, "mlvis") or module == own:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private += [p for p in module.split(".") if p.startswith("_") and not p.startswith("__")]
            if private:
                bad.append(f"{f.relative_to(root)} imports {module} ({', '.join(private)})")
    return bad


def test_nothing_outside_the_glue_imports_it():
    outside = [p for p in library_files() if not p.is_relative_to(PACKAGE / "app")]
    assert PACKAGE / "cli.py" in outside
    assert glue_violations(outside) == []


def test_no_module_imports_another_modules_private_names():
    assert set(private_violations(library_files() + PAGE_FILES)) <= PRIVATE_ALLOWED


def test_the_scanner_catches_violations(tmp_path):
    """The rules above can fail: synthetic modules that break each one are reported."""
    pkg = tmp_path / "mlvis"
    (pkg / "viz").mkdir(parents=True)
    (pkg / "core.py").write_text("import os\nif True:\n    from streamlit import session_state\n")
    (pkg / "lazy.py").write_text("import importlib\nst = importlib.import_module('streamlit')\n")
    (pkg / "viz" / "plots.py").write_text("from .. import attacks\nfrom ..attacks.mifgsm import MIFGSM\n")
    assert streamlit_violations([pkg / "core.py", pkg / "lazy.py"], tmp_path) == [
        "mlvis/core.py imports streamlit",
        "mlvis/core.py imports streamlit.session_state",
        "mlvis/lazy.py imports streamlit",
    ]
    assert {"mlvis.attacks", "mlvis.attacks.mifgsm"} <= imported_modules(pkg / "viz" / "plots.py", tmp_path)
    bad_page = (
        "import numpy as np\nimport torch\nimport mlvis\nfrom mlvis import create_model, data\n"
        "from mlvis.app import cache\nfrom mlvis.viz.gallery import confidence_bars\n"
        "from mlvis.models.registry import default_device\nfrom mlvis.attacks.iterative import run_loop\n"
        "from mlvis import _private_helper\n"
    )
    assert page_violations(source_imports(bad_page, ["pages"]), "pages/bad.py") == [
        "pages/bad.py imports torch",
        "pages/bad.py imports mlvis.models.registry (default_device)",
        "pages/bad.py imports mlvis.attacks.iterative (run_loop)",
        "pages/bad.py imports mlvis (_private_helper)",
    ]
    (pkg / "cli.py").write_text("from mlvis.app import recipe\n")
    (pkg / "analysis").mkdir()
    (pkg / "analysis" / "profiles.py").write_text(
        "from mlvis.attacks.engine import _check_images, run_job\nfrom .profiles import _own\n"
    )
    assert glue_violations([pkg / "cli.py"], tmp_path) == [
        "mlvis/cli.py imports mlvis.app",
        "mlvis/cli.py imports mlvis.app.recipe",
    ]
    assert private_violations([pkg / "analysis" / "profiles.py"], tmp_path) == [
        "mlvis/analysis/profiles.py imports mlvis.attacks.engine (_check_images)"
    ]
