"""Real processes killed with SIGKILL (and stopped with SIGINT) while training with checkpoints.

The child script below trains a small network with everything that draws random numbers (shuffling,
dropout, a validation split) and Adam with early-stopping bookkeeping, writing a checkpoint, and resumes
from it when one exists. Every run here is bounded: small data, a few hundred steps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from matnet.checkpoint import load_model, read_checkpoint

pytestmark = pytest.mark.slow

CHILD = r"""
import os, signal, sys, time
import numpy as np
import matnet

ckpt, dtype, every, epochs, out, pause_at, pause_s, sleep_s = sys.argv[1:9]
rng = np.random.default_rng(1)
X = rng.normal(size=(200, 8))
y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 1)


class Control(matnet.Callback):
    def on_train_begin(self, logs):
        print("START", flush=True)

    def on_batch_end(self, step, logs):
        if float(sleep_s):
            time.sleep(float(sleep_s))  # slows the run down without changing its arithmetic
        if step == int(pause_at):
            print("PAUSE", flush=True)
            time.sleep(float(pause_s))


model = matnet.MLP([8, 24, 3], dropout=0.2, loss="cross_entropy", seed=0, dtype=dtype)
history = model.fit(
    X, y, epochs=int(epochs), batch_size=16, seed=5, validation_fraction=0.2,
    early_stopping=True, patience=1000, learning_rate=0.01, verbose=0,
    checkpoint=None if ckpt == "-" else ckpt,
    checkpoint_every=every if every == "epoch" else int(every),
    resume=ckpt != "-", callbacks=Control(),
)
tmp = out + ".tmp.npy"
np.save(tmp, model.flat_params)
os.replace(tmp, out)
print("DONE", history.interrupted, len(history), flush=True)
print("HANDLER", signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
"""


@pytest.fixture
def child(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def start(ckpt, dtype, every, epochs, out, pause_at=-1, pause_s=0, sleep_s=0):
        args = [ckpt, dtype, every, epochs, out, pause_at, pause_s, sleep_s]
        return subprocess.Popen(
            [sys.executable, str(script), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    return start


def wait_for(proc, word):
    for line in proc.stdout:
        if line.strip() == word:
            return
    raise AssertionError(f"child ended before printing {word}: {proc.stderr.read()}")


def finish(proc):
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out, err


def reference(child, tmp_path, dtype, epochs):
    out = tmp_path / f"reference-{dtype}.npy"
    finish(child("-", dtype, "epoch", epochs, out))
    return np.load(out)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("every", "pause_at"), [("epoch", 25), (3, 22)], ids=["epoch", "mid"])
def test_sigkill_then_resume_is_bit_identical(child, tmp_path, dtype, every, pause_at):
    # 160 training rows at batch 16: 10 steps per epoch. Step 25 is mid-epoch 3, so the last
    # checkpoint is the end of epoch 2 ("epoch") or step 21, batch 1 of epoch 3 ("mid").
    expected = reference(child, tmp_path, dtype, 5)
    ckpt, out = tmp_path / "run.ckpt", tmp_path / "out.npy"
    proc = child(ckpt, dtype, every, 5, out, pause_at=pause_at, pause_s=60)
    wait_for(proc, "PAUSE")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    state = read_checkpoint(ckpt).state
    assert (state.epoch, state.batch) == ((3, 0) if every == "epoch" else (3, 1))
    finish(child(ckpt, dtype, every, 5, out))
    assert np.array_equal(np.load(out), expected)


def test_twenty_random_sigkills_never_corrupt_the_checkpoint(child, tmp_path):
    """Kill a run that checkpoints after every step at 20 random moments, resuming after each kill;
    every time the checkpoint is absent (not yet written) or whole, and the run that finally completes
    ends bit-identical to one never interrupted."""
    epochs = 60  # 600 steps; each killed run does at most 0.15 s / 5 ms = 30 of them
    expected = reference(child, tmp_path, "float32", epochs)
    ckpt, out = tmp_path / "run.ckpt", tmp_path / "out.npy"
    moments = np.random.default_rng(2024).uniform(0.0, 0.15, size=20)
    found, steps = 0, []
    for delay in moments:
        proc = child(ckpt, "float32", 1, epochs, out, sleep_s=0.005)
        wait_for(proc, "START")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
        if ckpt.exists():
            found += 1
            state = read_checkpoint(ckpt).state  # raises ModelFileError if it were corrupt
            load_model(ckpt)
            steps.append(state.step)
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(leftovers) <= 1, leftovers  # at most the one being written when killed
    assert found >= 15, f"only {found} of 20 kills found a checkpoint: the test did not exercise it"
    assert steps == sorted(steps) and steps[-1] < epochs * 10
    out_run = child(ckpt, "float32", 50, epochs, out)
    finish(out_run)
    assert np.array_equal(np.load(out), expected)


def test_sigint_stops_after_the_step_writes_the_checkpoint_and_resumes(child, tmp_path):
    expected = reference(child, tmp_path, "float64", 4)
    ckpt, out = tmp_path / "run.ckpt", tmp_path / "out.npy"
    proc = child(ckpt, "float64", "epoch", 4, out, pause_at=17, pause_s=1.0)
    wait_for(proc, "PAUSE")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = finish(proc)
    assert "DONE True 1" in stdout  # interrupted, one whole epoch in the history
    assert "HANDLER True" in stdout  # the previous SIGINT handler is back
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "interrupted at epoch 2, step 17" in lines[0]
    assert "kept the best weights (epoch 1)" in lines[0]
    assert f"checkpoint written to {ckpt}" in lines[0]
    assert "Traceback" not in stderr
    state = read_checkpoint(ckpt).state
    assert (state.epoch, state.batch, state.step) == (2, 7, 17)
    finish(child(ckpt, "float64", "epoch", 4, out))
    assert np.array_equal(np.load(out), expected)
