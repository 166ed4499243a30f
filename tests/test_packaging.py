"""The wheel installs one top-level package, `deepsuite`, and works beside a user's own `common/`.

Built from the tracked sources (copied out, so the build leaves nothing in the checkout), installed with
`pip install --no-deps` into a fresh virtual environment whose dependencies come from this one's
site-packages, and run from a folder that has `common/` and `pipelines/` packages of its own that
would fail loudly if imported.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.support.cli import REPO

SOURCES = ("common", "pipelines", "tuning", "app", "setup.py", "pyproject.toml", "README.md")


def run(args: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, timeout=600, **kwargs)


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python*/site-packages"))


def test_the_wheel_holds_one_top_level_package_and_ignores_a_local_common(tmp_path):
    tracked = run(["git", "ls-files", *SOURCES], cwd=REPO).stdout.split()
    source = tmp_path / "src"
    for name in tracked:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
         tmp_path / "dist", source])
    (wheel,) = (tmp_path / "dist").glob("deepsuite-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    site = site_packages(venv)
    before = {p.name for p in site.iterdir()}
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel])
    added = {p.name for p in site.iterdir()} - before
    assert {name for name in added if not name.endswith(".dist-info")} == {"deepsuite"}
    assert sorted((site / "deepsuite").iterdir()) == [site / "deepsuite" / n for n in ("app", "common", "pipelines",
                                                                                    "tuning")]
    assert (site / "deepsuite" / "pipelines" / "image_classification" / "pipeline.py").exists()

    # The dependencies (keras, mlflow, ...) from this environment, after the fresh one's own packages.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    user = tmp_path / "notebook"
    for name in ("common", "pipelines", "tuning"):
        (user / name).mkdir(parents=True)
        (user / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} was imported')\n")
    listed = run([venv / "bin" / "deepsuite", "list"], cwd=user)
    assert listed.stdout.count("\n  commands: ") == 7, listed.stdout + listed.stderr
    for name in ("image-classification", "medical-imaging", "image-denoising", "sentiment-analysis",
                 "text-generation", "recommendation", "image-generation"):
        assert f"{name}\n  " in listed.stdout
    assert "the user's own" not in listed.stdout + listed.stderr
    where = run([venv / "bin" / "python", "-c", "import deepsuite.common.config as c; print(c.__file__)"], cwd=user)
    assert where.stdout.strip().startswith(str(site / "deepsuite" / "common"))
