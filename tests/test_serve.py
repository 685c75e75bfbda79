"""`matnet serve` as a user runs it: a separate process on a free loopback port, real HTTP requests
(good, malformed, unknown columns, oversized, CSV, concurrent), answers compared with `matnet
predict`'s on the same rows; and the micro-batcher in-process."""

from __future__ import annotations

import asyncio
import csv
import http.client
import io
import json
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from tolerance import assert_close

from matnet.datasets import load_dataset

pytest.importorskip("starlette", reason="matnet serve needs the serve extra (starlette)")
pytest.importorskip("uvicorn", reason="matnet serve needs the serve extra (uvicorn)")

from matnet.serve.batching import MicroBatcher  # noqa: E402

MAX_BODY = 64 * 1024


# --- the service as a process ------------------------------------------------------------------


class Server:
    """`python -m matnet serve MODEL --port 0` (the OS picks a free port; the first line names it)."""

    def __init__(self, model: Path, *options: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "matnet", "serve", str(model), "--port", "0", *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))
        reader.start()
        reader.join(timeout=60)
        if not line or "http://127.0.0.1:" not in line[0]:
            self.proc.kill()
            raise AssertionError(f"matnet serve did not start: {line} {self.proc.stderr.read()}")
        self.port = int(line[0].split("http://127.0.0.1:")[1].split()[0])
        # The access log (one line per request) goes on stdout: read it as it comes, so the
        # pipe never fills and blocks the service.
        self.log: list[str] = []
        self._drain = threading.Thread(target=self._read_log, daemon=True)
        self._drain.start()

    def _read_log(self) -> None:
        for text in self.proc.stdout:
            self.log.append(text)

    def request(self, method: str, path: str, body: bytes | None = None, kind: str | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"Content-Type": kind} if kind else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode()
            return response.status, json.loads(text)
        finally:
            conn.close()

    def post(self, rows, path: str = "/predict"):
        return self.request("POST", path, json.dumps(rows).encode(), "application/json")

    def stop(self) -> str:
        """Ctrl-C: the service stops by itself; returns its stderr."""
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        assert self.proc.returncode == 0, err
        return err


def _write_csv(path: Path, names: list[str], X: np.ndarray, y=None, target=None) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names + ([target] if target else []))
        for i, row in enumerate(X.tolist()):
            w.writerow(row + ([y[i]] if target else []))


def _matnet(*args, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "matnet", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A classifier (string labels) and a regressor trained by `matnet train`, their test rows as
    CSV, and `matnet predict`'s answers for those rows."""
    tmp = tmp_path_factory.mktemp("serve")
    iris, diabetes = load_dataset("iris:test"), load_dataset("diabetes:test")
    _write_csv(tmp / "iris.csv", iris.feature_names, iris.X, iris.y, "species")
    _write_csv(tmp / "diabetes.csv", diabetes.feature_names, diabetes.X)
    common = ["--recipe", "mlp", "--epochs", "15", "--quiet", "--hidden", "32,16"]
    _matnet("train", "iris:train", *common, "--out", "iris.safetensors", cwd=tmp)
    _matnet("train", "diabetes:train", *common, "--out", "diabetes.safetensors", cwd=tmp)
    expected = {
        "iris": list(csv.reader(io.StringIO(_matnet(
            "predict", "iris.safetensors", "iris.csv", "--proba", cwd=tmp)))),
        "diabetes": list(csv.reader(io.StringIO(_matnet(
            "predict", "diabetes.safetensors", "diabetes.csv", cwd=tmp)))),
    }  # fmt: skip
    return {"dir": tmp, "iris": iris, "diabetes": diabetes, "expected": expected}


@pytest.fixture(scope="module")
def classifier(files):
    server = Server(files["dir"] / "iris.safetensors", "--max-body", str(MAX_BODY))
    yield server
    assert "Traceback" not in server.stop()


@pytest.fixture(scope="module")
def regressor(files):
    server = Server(files["dir"] / "diabetes.safetensors")
    yield server
    assert "Traceback" not in server.stop()


def _assert_like_predict(
    answer: dict, expected: list[list[str]], rows: slice = slice(None), same_matrix: bool = True
):
    """Labels as `matnet predict` writes them; probabilities equal to its 6 significant digits when
    the request holds the same rows as its file (the same matrix product). A request of other rows
    is another product, whose float32 sums BLAS may round in another order: then the probabilities
    agree to float32 rounding, i.e. the printed digits within one unit of the 6th."""
    header, body = expected[0], expected[1:][rows]
    assert [str(label) for label in answer["predictions"]] == [r[0] for r in body]
    if "probabilities" in answer:
        assert [f"proba_{c}" for c in answer["classes"]] == header[1:]
        if same_matrix:
            got = [[f"{p:.6g}" for p in row] for row in answer["probabilities"]]
            assert got == [r[1:] for r in body]
        else:
            want = np.array([r[1:] for r in body], dtype=np.float64)
            assert_close(answer["probabilities"], want, rtol=1e-5)


# --- answers -----------------------------------------------------------------------------------


def test_health_and_model_view(classifier, files):
    status, health = classifier.request("GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["batching"] is True
    status, info = classifier.request("GET", "/model")
    assert status == 200
    assert info["classes"] == ["setosa", "versicolor", "virginica"]
    assert info["features"] == files["iris"].feature_names
    assert info["task"] == "classification" and info["loss"] == "softmax_cross_entropy"
    assert info["n_params"] == 4 * 32 + 32 + 32 * 16 + 16 + 16 * 3 + 3
    assert info["training"]["epochs"] == 15 and info["input_scaling"] is True
    assert [layer["type"] for layer in info["architecture"]][:2] == ["Standardize", "Dense"]


def test_json_rows_by_name_and_in_order_answer_as_matnet_predict(classifier, files):
    iris = files["iris"]
    named = [dict(zip(iris.feature_names, row, strict=True)) for row in iris.X.tolist()]
    status, answer = classifier.post(named, "/predict?proba=1")
    assert status == 200
    _assert_like_predict(answer, files["expected"]["iris"])
    # Lists in the model's column order, the proba flag in the body, the target column tolerated.
    named[0]["target"] = "setosa"
    status, by_order = classifier.post({"rows": iris.X.tolist(), "proba": True})
    assert status == 200 and by_order == answer
    status, labels_only = classifier.post(named)
    assert status == 200 and set(labels_only) == {"predictions"}
    assert labels_only["predictions"] == answer["predictions"]


def test_csv_body_answers_as_matnet_predict(classifier, files):
    body = (files["dir"] / "iris.csv").read_bytes()
    status, answer = classifier.request("POST", "/predict?proba=true", body, "text/csv")
    assert status == 200
    _assert_like_predict(answer, files["expected"]["iris"])


def test_regressor_returns_values_as_matnet_predict(regressor, files):
    status, answer = regressor.post(files["diabetes"].X.tolist())
    assert status == 200
    expected = files["expected"]["diabetes"]
    assert expected[0] == ["progression"]
    assert [f"{v:.8g}" for v in answer["predictions"]] == [r[0] for r in expected[1:]]
    status, error = regressor.post(files["diabetes"].X[:2].tolist(), "/predict?proba=1")
    assert status == 422 and "this model is a regressor" in error["error"]


def test_concurrent_single_row_requests_each_get_their_own_answer(classifier, files):
    iris = files["iris"]
    rows = iris.X.tolist() * 4

    def one(i: int):
        return classifier.post([rows[i]], "/predict?proba=1")

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(one, range(len(rows))))
    expected = files["expected"]["iris"]
    n = len(iris.X)
    for i, (status, answer) in enumerate(answers):
        assert status == 200
        _assert_like_predict(answer, expected, slice(i % n, i % n + 1), same_matrix=False)
    status, health = classifier.request("GET", "/health")
    # Every row went through the model, in at most as many calls as there were requests.
    assert health["rows"] >= len(rows) and health["model_calls"] <= health["rows"]


# --- bad requests: one line, a 4xx, never a traceback --------------------------------------------


BAD = [
    ("malformed-json", b"[[5.1, 3.5", "application/json", 400, "not valid JSON"),
    ("not-a-list", b'"hello"', "application/json", 422, "must be a JSON list"),
    ("empty-list", b"[]", "application/json", 422, "the list of rows is empty"),
    ("short-row", b"[[1, 2, 3]]", "application/json", 422, "3 values, but the model expects 4"),
    ("text-cell", b'[[1, "x", 3, 4]]', "application/json", 422, "'x' is not a number"),
    ("null-cell", b"[[1, null, 3, 4]]", "application/json", 422, "null is not a number"),
    ("nan-cell", b"[[1, NaN, 3, 4]]", "application/json", 422, "matnet needs finite numbers"),
    ("bad-field", b'{"rows": [], "probe": 1}', "application/json", 422, "unknown field 'probe'"),
    ("bad-proba", b'{"rows": [[1,2,3,4]], "proba": "maybe"}', "application/json", 400, "'proba'"),
    ("csv-text-cell", None, "text/csv", 422, "request body, line 3, column"),
    ("csv-missing-column", b"a,b\n1,2\n", "text/csv", 422, "a feature the model was trained on"),
    ("csv-ragged", b"a,b\n1,2,3\n", "text/csv", 422, "line 2: 3 fields, but the header has 2"),
    ("form-type", b"x=1", "application/x-www-form-urlencoded", 415, "not served"),
    ("not-utf8", b"\xff\xfe[", "text/csv", 400, "not UTF-8 text"),
]


@pytest.mark.parametrize("body, kind, status, words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_requests_get_one_line_4xx(classifier, files, body, kind, status, words):
    if body is None:  # a CSV with the model's columns and one bad cell on line 3
        names = files["iris"].feature_names
        body = (",".join(names) + "\n1,2,3,4\n1,2,x,4\n").encode()
    got, answer = classifier.request("POST", "/predict", body, kind)
    assert (got, set(answer)) == (status, {"error"})
    assert words in answer["error"] and "\n" not in answer["error"]
    assert "Traceback" not in answer["error"]


def test_unknown_and_missing_features_are_named(classifier, files):
    names = files["iris"].feature_names
    row = {name: 1.0 for name in names}
    status, answer = classifier.post([row, {**row, "petal colour": 3}])
    assert status == 422
    assert answer["error"] == "request body, row 2: unknown key 'petal colour'"
    del row[names[2]]
    status, answer = classifier.post([row])
    assert status == 422 and f"lacks 1 of the model's 4 features: {names[2]!r}" in answer["error"]


def test_mis_cased_keys_are_all_named_with_a_did_you_mean(classifier, files):
    names = files["iris"].feature_names
    row = {name.upper(): 1.0 for name in names[:2]} | {name: 1.0 for name in names[2:]}
    status, answer = classifier.post([row])
    assert status == 422
    message = answer["error"]
    assert f"lacks 2 of the model's 4 features: {names[0]!r}, {names[1]!r}" in message
    for name in names[:2]:
        assert f"{name.upper()!r} (did you mean {name!r}?)" in message


def test_oversized_body_is_413_and_the_service_goes_on(classifier, files):
    rows = [files["iris"].X[0].tolist()] * 4000  # about 80 KiB of JSON
    status, answer = classifier.post(rows)
    assert status == 413 and f"the limit is {MAX_BODY}" in answer["error"]
    status, _ = classifier.post(rows[:10])
    assert status == 200


def test_unknown_route_and_method_are_json_4xx(classifier):
    assert classifier.request("GET", "/nowhere")[0] == 404
    status, answer = classifier.request("GET", "/predict")
    assert status == 405 and "error" in answer


def test_a_taken_port_is_one_line_and_exit_2(classifier, files):
    result = subprocess.run(
        [sys.executable, "-m", "matnet", "serve", str(files["dir"] / "iris.safetensors"),
         "--port", str(classifier.port)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().startswith("matnet serve: error: cannot listen on 127.0.0.1:")
    assert len(result.stderr.strip().splitlines()) == 1


# --- the micro-batcher in-process ----------------------------------------------------------------


def _double(X: np.ndarray, want_proba: bool):
    calls.append(X.shape[0])
    if np.any(X < 0):
        raise ValueError("negative")
    return X[:, 0] * 2, (X if want_proba else None)


calls: list[int] = []


def test_requests_queued_together_go_through_one_model_call():
    async def scenario():
        batcher = MicroBatcher(_double, wait_s=0.05, max_rows=1000)
        batcher.start()
        batcher.incoming = 1  # a request on its way: the batch waits for it (until wait_s)
        inputs = [np.full((i + 1, 1), float(i)) for i in range(10)]
        answers = await asyncio.gather(
            *(batcher.submit(X, proba=i % 2 == 0) for i, X in enumerate(inputs))
        )
        await batcher.stop()
        return inputs, answers, batcher

    calls.clear()
    inputs, answers, batcher = asyncio.run(scenario())
    assert calls == [55] and batcher.calls == 1 and batcher.rows == 55
    for i, (X, (decided, P)) in enumerate(zip(inputs, answers, strict=True)):
        np.testing.assert_array_equal(decided, X[:, 0] * 2)
        if i % 2 == 0:
            np.testing.assert_array_equal(P, X)
        else:
            assert P is None


def test_a_lone_request_does_not_wait_for_others():
    async def scenario():
        batcher = MicroBatcher(_double, wait_s=10.0, max_rows=1000)
        batcher.start()
        # incoming is 0: nothing is on its way, so the batch runs without waiting wait_s
        answer = await asyncio.wait_for(batcher.submit(np.full((2, 1), 4.0), True), timeout=5)
        await batcher.stop()
        return answer, batcher

    calls.clear()
    (decided, P), batcher = asyncio.run(scenario())
    assert calls == [2] and batcher.calls == 1
    np.testing.assert_array_equal(decided, [8, 8])
    np.testing.assert_array_equal(P, np.full((2, 1), 4.0))


def test_a_failing_batch_is_answered_request_by_request():
    async def scenario():
        batcher = MicroBatcher(_double, wait_s=0.05, max_rows=1000)
        batcher.start()
        batcher.incoming = 1
        results = await asyncio.gather(
            batcher.submit(np.ones((2, 1)), False),
            batcher.submit(-np.ones((1, 1)), False),
            batcher.submit(np.full((3, 1), 3.0), False),
            return_exceptions=True,
        )
        await batcher.stop()
        return results

    calls.clear()
    good, bad, other = asyncio.run(scenario())
    assert calls == [6, 2, 1, 3]
    np.testing.assert_array_equal(good[0], [2, 2])
    assert isinstance(bad, ValueError)
    np.testing.assert_array_equal(other[0], [6, 6, 6])


@pytest.mark.slow
def test_bench_serve_smoke(tmp_path):
    """The benchmark runs end to end on a few requests, so it cannot rot; no timing is asserted."""
    out = tmp_path / "serve.md"
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_serve.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert "smoke run" in text
    for setup in ("HTTP, micro-batched", "HTTP, one model call per request", "in-process matnet"):
        assert sum(line.startswith(f"| {setup}") for line in text.splitlines()) == 3
    assert "ONNX Runtime" in text


def test_a_table_model_serves_raw_cells_as_matnet_predict_reads_them(tmp_path):
    """A model trained on the raw penguins table (strings, gaps) takes JSON rows of raw cells and
    CSV bodies with gaps, and answers as `matnet predict` does."""
    data = Path(__file__).parent / "data" / "penguins.csv"
    model = tmp_path / "penguins.safetensors"
    _matnet(
        "train",
        data,
        "--target",
        "species",
        "--epochs",
        "5",
        "--quiet",
        "--out",
        model,
        cwd=tmp_path,
    )
    rows = list(csv.DictReader(data.open()))[:12]
    for row in rows:
        del row["species"]
    body = io.StringIO()
    writer = csv.DictWriter(body, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    (tmp_path / "rows.csv").write_text(body.getvalue())
    expected = [
        line.split(",")[0]
        for line in _matnet("predict", model, "rows.csv", cwd=tmp_path).splitlines()[1:]
    ]
    server = Server(model)
    try:
        cells = [{k: (None if v == "" else v) for k, v in row.items()} for row in rows]
        status, answer = server.post(cells)
        assert status == 200, answer
        assert answer["predictions"] == expected
        status, answer = server.request("POST", "/predict", body.getvalue().encode(), "text/csv")
        assert status == 200, answer
        assert answer["predictions"] == expected
        status, answer = server.post([{**cells[0], "island": 3.5}])
        assert status in (200, 422), answer  # a number in a text column: the unknown slot or a 422
    finally:
        server.stop()


def test_every_request_gets_one_access_log_line(regressor, files):
    before = len(regressor.log)
    rows = files["diabetes"].X[:2].tolist()
    assert regressor.post(rows)[0] == 200
    assert regressor.request("GET", "/nowhere")[0] == 404
    deadline = time.monotonic() + 10
    while len(regressor.log) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = regressor.log[before:]
    assert len(lines) == 2, lines
    assert '"POST /predict HTTP/1.1" 200' in lines[0]
    assert '"GET /nowhere HTTP/1.1" 404' in lines[1]
