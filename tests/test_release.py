"""A release someone can install (issue 15, item 18): the sdist carries what its own `make test` needs,
the wheel carries neither C sources nor a stale compiled module, both pass `twine check`, and the
license is declared as an SPDX expression with its file.

Built without network (``python -m build --no-isolation``, with the dev extra's setuptools), from a
copy of the source tree; the wheel is built from the unpacked sdist, as ``python -m build`` does.
Running `make test` inside the unpacked sdist (a fresh virtual environment and every test) is too
slow for the suite; this test collects every test there instead, and runs the one that reads
benchmarks/, which the sdist used to lack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ["LICENSE", "README.md", "Makefile", "pyproject.toml", "setup.py", "MANIFEST.in",
          ".ci/run", "docs/errors.md", "docs/extending.md", "docs/derivation.md",
          "examples/demo.py", "matnet/_kernels.c", "matnet/py.typed",
          "benchmarks/bench_train.py", "benchmarks/bench_distributed.py"]  # fmt: skip


def _python(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    pytest.importorskip("build")
    pytest.importorskip("twine")
    work = tmp_path_factory.mktemp("release")
    source = work / "source"
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", ".pytest_cache", ".ruff_cache",
        ".mypy_cache", ".hypothesis", "__pycache__", "out",
    )  # fmt: skip
    shutil.copytree(ROOT, source, ignore=ignore, symlinks=True)
    # An editable install compiles the kernels into the tree; a stale one for another Python, too.
    (source / "matnet" / "_kernels.cpython-39-x86_64-linux-gnu.so").write_bytes(b"stale")
    dist = work / "dist"
    _python("-m", "build", "--no-isolation", "--sdist", "--outdir", dist, source, cwd=work)
    (sdist,) = dist.glob("matnet-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "unpacked", filter="data")
    (unpacked,) = (work / "unpacked").iterdir()
    (unpacked / "matnet" / "_kernels.cpython-39-x86_64-linux-gnu.so").write_bytes(b"stale")
    _python("-m", "build", "--no-isolation", "--wheel", "--outdir", dist, unpacked, cwd=work)
    (wheel,) = dist.glob("matnet-*.whl")
    return sdist, unpacked, wheel


def test_the_sdist_carries_what_its_tests_need_and_no_compiled_module(release):
    sdist, unpacked, _ = release
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in NEEDED:
        assert needed in names, needed
    tracked_tests = {f"tests/{p.name}" for p in (ROOT / "tests").glob("*.py")}
    assert tracked_tests <= names
    assert not [name for name in names if name.endswith((".so", ".pyc"))]
    # Every test module imports from the unpacked sdist, and the one that reads benchmarks/ passes.
    env = {**os.environ, "PYTHONPATH": str(unpacked), "MATNET_NO_KERNELS": "1"}
    env.pop("CI", None)  # CI=1 insists on compiled kernels, which this tree does not build
    collected = _python("-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                        cwd=unpacked, env=env)  # fmt: skip
    assert "error" not in collected.stdout.lower().splitlines()[-1], collected.stdout[-2000:]
    _python("-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/test_bench_smoke.py",
            cwd=unpacked, env=env)  # fmt: skip


def test_the_wheel_has_no_c_source_and_no_stale_module(release):
    _, _, wheel = release
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert not [name for name in names if name.endswith(".c")]
    assert "matnet/py.typed" in names and "matnet/data/digits.npz" in names
    compiled = [name for name in names if name.endswith(".so")]
    # The module compiled for this interpreter (where a compiler exists), never the planted one.
    assert all("cpython-39" not in name for name in compiled), compiled
    assert len(compiled) <= 1
    if os.environ.get("CI"):  # CI has a C compiler (tests/test_kernels.py insists on it)
        assert len(compiled) == 1, names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    text = metadata.decode()
    assert "License-Expression: MIT" in text and "License-File: LICENSE" in text


def test_twine_check_passes(release):
    sdist, _, wheel = release
    result = _python("-m", "twine", "check", "--strict", sdist, wheel, cwd=sdist.parent)
    assert result.stdout.count("PASSED") == 2, result.stdout
