"""`pip install .` (not editable) gives a working zsyft: the wheel holds every module and the
worker script the launcher runs, and a worker started from the installed copy serves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a clean copy of the checkout (a `build/` directory left by an
    earlier build would hide files the package data misses)."""
    source = tmp_path_factory.mktemp("source") / "zsyft"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", ".*venv*", "__pycache__", ".*cache"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(source)], check=True, timeout=300, capture_output=True)
    (found,) = out.glob("zsyft-*.whl")
    return found


def test_the_wheel_holds_every_module_and_the_worker_script(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "launcher/bin/zsyft-worker" in names
    sources = {
        str(path.relative_to(ROOT))
        for package in ("zsyft", "launcher")
        for path in (ROOT / package).rglob("*.py")
    }
    assert sources <= names, sorted(sources - names)


@pytest.mark.timeout(180)
def test_a_worker_runs_from_the_installed_copy(wheel, tmp_path):
    """Installed into a directory of its own (the checkout is not on the path): a worker
    process starts from the installed launcher and a tensor makes the round trip."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=300, capture_output=True)
    script = (
        "import torch, zsyft as sy, launcher\n"
        f"assert launcher.__file__.startswith({str(target)!r}), launcher.__file__\n"
        "bob = sy.VirtualWorker(sy.TorchHook(torch), id='bob')\n"
        "print(torch.tensor([1.0, 2.0]).send(bob).get().tolist())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[1.0, 2.0]"
