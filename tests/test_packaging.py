"""What `pip install` of the repository gives, and what the repository promises about serving and licensing."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from email.parser import Parser
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _top_level_imports() -> dict[str, set[str]]:
    """Every third-party top-level module that mlvis's own modules import (at any depth, lazily too)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "mlvis").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "mlvis" and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.fixture(scope="module")
def wheel_metadata(tmp_path_factory) -> dict[str, list[str]]:
    """The METADATA of the wheel setuptools would build from this checkout (offline, in a copy)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "mlvis", src / "mlvis", ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    (src / "out").mkdir()
    code = "from setuptools import build_meta; print(build_meta.prepare_metadata_for_build_wheel('out'))"
    run = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    dist_info = src / "out" / run.stdout.strip().splitlines()[-1]
    msg = Parser().parsestr((dist_info / "METADATA").read_text())
    return {key: msg.get_all(key) or [] for key in ("Requires-Dist", "License-Expression", "Name")}


def test_the_wheel_requires_every_distribution_mlvis_imports(wheel_metadata):
    required = {_name(r) for r in wheel_metadata["Requires-Dist"]}
    dists = packages_distributions()
    missing = {}
    for module, files in _top_level_imports().items():
        provided_by = {_norm(d) for d in dists.get(module, [module])}
        if not provided_by & required:
            missing[module] = sorted(files)[:3]
    assert not missing, f"imported by mlvis but not in pyproject's dependencies: {missing}"
    assert wheel_metadata["Name"] == ["mlvis"] and wheel_metadata["License-Expression"] == ["MIT"]


def _name(requirement: str) -> str:
    return _norm(re.split(r"[\s;<>=!~\[(]", requirement.strip(), maxsplit=1)[0])


def test_pyproject_and_requirements_name_the_same_runtime_distributions(wheel_metadata):
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    pinned = {_name(line) for line in lines if line and not line.startswith("-")}
    assert {_name(r) for r in wheel_metadata["Requires-Dist"]} == pinned


def test_the_app_listens_on_loopback_with_xsrf_and_an_upload_cap():
    # what streamlit itself reads from .streamlit/config.toml (not only our reading of the file)
    shown = subprocess.run([sys.executable, "-m", "streamlit", "config", "show"], cwd=ROOT, capture_output=True,
                           text=True, timeout=120).stdout  # fmt: skip
    for line in ('address = "127.0.0.1"', "enableXsrfProtection = true", "enableCORS = true"):
        assert f"\n{line}\n" in shown
    upload = re.search(r"\nmaxUploadSize = (\d+)\n", shown)
    assert upload and 0 < int(upload.group(1)) <= 50  # MB per file
    make = (ROOT / "Makefile").read_text()
    assert "HOST ?= 127.0.0.1" in make and "--server.address $(HOST)" in make


def test_license_and_citation_are_there():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n\nCopyright (c)")
    assert "the mlvis authors" in (ROOT / "LICENSE").read_text()
    cff = (ROOT / "CITATION.cff").read_text()
    assert "cff-version: 1.2.0" in cff and 'family-names: "van Thiel"' in cff
    assert "Champagne Taste on a Beer Budget: Better Budget Utilisation in Multi-label Adversarial Attacks" in cff
