"""The matnet command as a user runs it: a separate process, through `python -m matnet` and the
installed `matnet` console script."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from matnet.datasets import load_dataset

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("matnet")
    if script.exists():
        return [str(script)]
    found = shutil.which("matnet")
    if found is None:
        pytest.skip("the matnet console script is not installed (pip install -e .)")
    return [found]


COMMANDS = {"module": [sys.executable, "-m", "matnet"], "script": None}


def run(how: str, *args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    command = COMMANDS[how] or _console_script()
    result = subprocess.run(
        [*command, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("how", ["module", "script"])
def test_train_predict_evaluate_info_explain(tmp_path, how):
    table = load_dataset("iris")
    with open(tmp_path / "flowers.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sl", "sw", "pl", "pw", "species"])
        for x, y in zip(table.X, table.y, strict=True):
            w.writerow([*x.tolist(), y])
    out = run(how, "train", "flowers.csv", "--recipe", "mlp", "--target", "species", "--hidden", "16", "--epochs",
              "40", "--lr", "0.01", "--out", "f.safetensors", cwd=tmp_path).stdout  # fmt: skip
    assert "wrote f.safetensors" in out
    out = run(how, "predict", "f.safetensors", "flowers.csv", "--out", "p.csv", cwd=tmp_path)
    predictions = (tmp_path / "p.csv").read_text().splitlines()
    assert predictions[0] == "species" and len(predictions) == 151
    assert set(predictions[1:]) <= {"setosa", "versicolor", "virginica"}
    out = run(how, "evaluate", "f.safetensors", "flowers.csv", cwd=tmp_path).stdout
    assert float(out.splitlines()[1].split()[1]) > 0.85
    out = run(how, "info", "f.safetensors", cwd=tmp_path).stdout
    assert "Dense(4 -> 16)" in out
    out = run(how, "explain", "f.safetensors", "--batch", "4", cwd=tmp_path).stdout
    # A CSV file makes a table model: the raw rows' codes, the robust scaling, then the first
    # Dense layer on its output.
    assert "C = codes(A0)" in out and "Z1 = R0 · W1 + b1" in out
    assert "(4×4)·(4×16) + (1×16) → (4×16)" in out


def test_user_error_in_a_real_process_is_one_line_without_traceback(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b,y\n1,2,x\n3,oops,y\n")
    result = run(
        "module", "train", "bad.csv", "--target", "y", "--numeric", "b", cwd=tmp_path, check=False
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "bad.csv, line 3, column 'b'" in result.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.csv"]
    result = run("module", "info", "bad.csv", cwd=tmp_path, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1


def test_train_digits_with_plot_needs_no_scikit_learn(tmp_path):
    pytest.importorskip("matplotlib")
    # A fresh install has NumPy (and here the plot extra) but no scikit-learn: block it.
    code = (
        "import sys; sys.modules['sklearn'] = None; from matnet.cli import main; "
        "sys.exit(main(['train', 'digits', '--epochs', '8', '--plot', 'curves.png']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "digits: 1797 rows, 64 features" in result.stdout
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == PNG_SIGNATURE
    import matplotlib.image

    assert matplotlib.image.imread(tmp_path / "curves.png").shape[:2] == (400, 1000)
    validation = next(line for line in result.stdout.splitlines() if line.startswith("validation"))
    assert float(validation.split()[2]) > 0.9


def test_ctrl_c_during_training_keeps_the_best_weights_and_writes_them(tmp_path):
    import signal
    import time

    (tmp_path / "model.safetensors").write_bytes(b"the previous model")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "matnet",
            "train",
            "digits",
            "--recipe",
            "mlp",  # epochs of a second or less, so the Ctrl-C lands after the first
            "--epochs",
            "100000",
            "--quiet",
            "--early-stopping",
            "--patience",
            "100000",
            "--checkpoint",
            "run.ckpt",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in process.stdout:  # wait until training has begun
            if line.startswith("model "):
                break
        time.sleep(1.0)  # well inside fit(), which turns Ctrl-C into a clean stop
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "interrupted at epoch" in err and "checkpoint written to run.ckpt" in err
    assert "Traceback" not in err
    assert "wrote model.safetensors" in out
    import matnet

    model = matnet.load(tmp_path / "model.safetensors")  # a whole model, the best epoch's weights
    assert model.metadata["training"]["best_epoch"] >= 1
