"""`matnet serve` under load: requests per second and p50/p99 latency for single-row requests at
1, 8 and 64 concurrent clients, micro-batched and with one model call per request, beside the same
model called in-process (matnet's own predict, and ONNX Runtime when `matnet.to_onnx` and
onnxruntime are both installed).

The model: digits (64 raw pixels, a Standardize layer in front), 64-256-128-10 ReLU, float32,
trained for a few epochs (the weights do not change the cost). Each client is a keep-alive HTTP/1.1
connection that sends one JSON row, waits for the answer, and sends the next (closed loop); clients
are asyncio coroutines in this process, so they share the machine with the server: the figures are
for client and server on one machine, over loopback. Every loop is bounded (``--requests`` per
level) and the server is stopped at the end.

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_serve.py \\
        --out benchmarks/RESULTS-serve.md
    python benchmarks/bench_serve.py --smoke --out /tmp/serve.md     # seconds, for tests
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import matnet
from matnet.datasets import load_dataset

LEVELS = (1, 8, 64)


def train_model(path: Path, sizes: list[int], epochs: int) -> tuple[matnet.Sequential, np.ndarray]:
    table = load_dataset("digits")
    model = matnet.MLP(sizes, "relu", standardize=True, loss="cross_entropy", seed=0)
    model.feature_names = list(table.feature_names)
    model.fit(table.X, table.y.astype(np.int64), epochs=epochs, seed=0, verbose=0)
    matnet.save(model, path)
    return model, table.X


# --- the service as a process ------------------------------------------------------------------


class Server:
    def __init__(self, model: Path, *options: str) -> None:
        command = [sys.executable, "-m", "matnet", "serve", str(model), "--port", "0", *options]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))
        reader.start()
        reader.join(timeout=60)
        if not line or "http://127.0.0.1:" not in line[0]:
            self.proc.kill()
            raise SystemExit(f"matnet serve did not start: {line}")
        self.port = int(line[0].split("http://127.0.0.1:")[1].split()[0])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def _exchange(reader, writer, request: bytes) -> bytes:
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length)
    if status != b"200":
        raise RuntimeError(f"HTTP {status.decode()}: {body.decode()}")
    return body


def _request(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _load(port: int, rows: list[bytes], clients: int, total: int) -> tuple[float, list]:
    """``total`` single-row requests from ``clients`` keep-alive connections; (seconds, latencies)."""
    latencies: list[float] = []
    per_client = [total // clients + (i < total % clients) for i in range(clients)]

    async def client(i: int, count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for j in range(count):
                request = _request("/predict", rows[(i * 7919 + j) % len(rows)])
                start = time.perf_counter()
                await _exchange(reader, writer, request)
                latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(i, n) for i, n in enumerate(per_client) if n))
    return time.perf_counter() - start, latencies


def _health(port: int) -> dict:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/health")
    answer = json.loads(conn.getresponse().read())
    conn.close()
    return answer


def bench_http(
    model_path: Path, X: np.ndarray, total: int, rounds: int, modes: dict[str, list[str]]
) -> dict[str, list[dict]]:
    """Each mode's server started once; then ``rounds`` rounds, each running every mode at every
    level in turn, so that a busy moment of the machine falls on all of them alike. Requests per
    second are the median over rounds; latencies are pooled over rounds."""
    rows = [json.dumps([row]).encode() for row in X[:512].tolist()]
    servers = {name: Server(model_path, *options) for name, options in modes.items()}
    runs: dict[tuple[str, int], list] = {(name, c): [] for name in modes for c in LEVELS}
    try:
        for server in servers.values():
            asyncio.run(_load(server.port, rows, 8, min(total, 400)))  # warm up
        for _ in range(rounds):
            for name, server in servers.items():
                for clients in LEVELS:
                    before = _health(server.port)
                    seconds, latencies = asyncio.run(
                        _load(server.port, rows, clients, max(total // rounds, clients))
                    )
                    calls = _health(server.port)["model_calls"] - before["model_calls"]
                    runs[name, clients].append((seconds, latencies, calls))
    finally:
        for server in servers.values():
            server.stop()
    results: dict[str, list[dict]] = {name: [] for name in modes}
    for (name, clients), done in runs.items():
        latencies = [t for _, lat, _ in done for t in lat]
        rps = float(np.median([len(lat) / sec for sec, lat, _ in done]))
        per_call = len(latencies) / max(sum(calls for *_, calls in done), 1)
        summary = _summary(clients, 1.0, latencies, per_call)
        summary["rps"] = rps
        results[name].append(summary)
    return results


# --- in-process baselines ----------------------------------------------------------------------


def _threads(call, X: np.ndarray, clients: int, total: int) -> dict:
    latencies: list[float] = []
    per_client = [total // clients + (i < total % clients) for i in range(clients)]

    def worker(i: int, count: int) -> None:
        for j in range(count):
            row = X[(i * 7919 + j) % 512][None, :]
            start = time.perf_counter()
            call(row)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(worker, range(clients), per_client))
    return _summary(clients, time.perf_counter() - start, latencies, 1.0)


def bench_inprocess(call, X: np.ndarray, total: int) -> list[dict]:
    """In-process calls on one BLAS thread each, as `matnet serve` runs them (more threads per
    single-row product only add their wake-up cost)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        _threads(call, X, 4, min(total, 400))  # warm up
        return [_threads(call, X, clients, total) for clients in LEVELS]


def onnx_session(model: matnet.Sequential, folder: Path):
    """An ONNX Runtime session of the model, or the reason there is none."""
    if not hasattr(matnet, "to_onnx"):
        return None, "matnet.to_onnx is not on this branch (the ONNX export of issue 13, item 1)"
    try:
        import onnxruntime
    except ImportError as exc:
        return None, f"onnxruntime is not installed ({exc}); pip install 'matnet[onnx]'"
    path = folder / "model.onnx"
    matnet.to_onnx(model, path)
    options = onnxruntime.SessionOptions()
    # One thread per call, like matnet's side: the concurrency comes from the calling threads.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    version = f"onnxruntime {onnxruntime.__version__}"
    return (lambda row: session.run(None, {name: row.astype(np.float32)})), version


# --- report ------------------------------------------------------------------------------------


def _summary(clients: int, seconds: float, latencies: list[float], rows_per_call: float) -> dict:
    ms = np.asarray(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "rps": len(latencies) / seconds,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "requests_per_model_call": rows_per_call,
    }


def report(results: dict[str, dict], args: argparse.Namespace) -> str:
    import starlette
    import uvicorn

    lines = [
        "# `matnet serve`: single-row requests at 1, 8 and 64 concurrent clients",
        "",
        "## Machine and command",
        "",
        f"- {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"NumPy {np.__version__}, matnet {matnet.__version__}, starlette {starlette.__version__}, "
        f"uvicorn {uvicorn.__version__}",
        "- models: digits (64 raw pixels, a Standardize layer in front), ReLU, float32, "
        f"{args.epochs} training epochs: "
        + ", ".join(f"{name} {'-'.join(map(str, MODELS[name]))}" for name in results),
        f"- 1-minute load average {args.load[0]:.1f} at the start, {args.load[1]:.1f} at the end "
        "(other work on the machine makes the figures noisy)",
        f"- {args.requests} requests per level and setup (the wide model: "
        f"{SHARE['wide']:.0%} of them), in {args.rounds} interleaved rounds "
        "(requests/s: median over rounds; latencies pooled)"
        + (" (**smoke run: too few requests to mean anything**)" if args.smoke else ""),
        "- clients: keep-alive HTTP/1.1 connections over loopback, closed loop (send one JSON row, "
        "wait, send the next), asyncio coroutines in the benchmark's process: client and server "
        "share the machine's cores; in-process: threads calling the model on one row each (one BLAS "
        "thread, one ONNX Runtime intra-op thread per call, as the service runs)",
        "",
        "```",
        "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_serve.py "
        + " ".join(args.argv),
        "```",
    ]
    notes = []
    for model, sections in results.items():
        lines += [
            "",
            f"## {model}: {'-'.join(map(str, MODELS[model]))}",
            "",
            "| setup | clients | requests/s | p50 ms | p99 ms | requests per model call |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, rows in sections.items():
            if isinstance(rows, str):
                notes.append(f"- {name}: not measured: {rows}")
                continue
            for r in rows:
                lines.append(
                    f"| {name} | {r['clients']} | {r['rps']:,.0f} | {r['p50_ms']:.3f} | "
                    f"{r['p99_ms']:.3f} | {r['requests_per_model_call']:.1f} |"
                )
    return "\n".join(lines + [""] + sorted(set(notes))) + "\n"


MODELS = {"small": [64, 256, 128, 10], "wide": [64, 2048, 2048, 10]}
#: The wide model answers ~10x fewer requests per second; it gets this share of --requests.
SHARE = {"small": 1.0, "wide": 0.25}


def bench_model(name: str, args: argparse.Namespace, folder: Path) -> dict:
    path = folder / "model.safetensors"
    model, X = train_model(path, MODELS[name], args.epochs)
    requests = max(int(args.requests * SHARE[name]), max(LEVELS))
    wait = f"micro-batched (wait {args.batch_wait_ms} ms)"
    modes = {wait: ["--batch-wait-ms", args.batch_wait_ms], "one model call per request": []}
    modes["one model call per request"] = ["--no-batching"]
    http = bench_http(path, X, requests, args.rounds, modes)
    sections: dict[str, list[dict] | str] = {f"HTTP, {name}": rows for name, rows in http.items()}
    sections["in-process matnet model.predict"] = bench_inprocess(model.predict, X, requests)
    call, what = onnx_session(model, folder)
    sections[f"in-process ONNX Runtime ({what if call else 'absent'})"] = (
        bench_inprocess(call, X, requests) if call else what
    )
    return sections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per level and mode")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-wait-ms", default="2")
    parser.add_argument("--models", default="small,wide", help=f"of {', '.join(MODELS)}")
    parser.add_argument("--smoke", action="store_true", help="a few requests: checks it runs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/RESULTS-serve.md"))
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.smoke:
        args.requests, args.epochs, args.rounds, args.models = 64, 1, 1, "small"
    load = os.getloadavg()[0]
    results = {}
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as folder:
            results[name] = bench_model(name, args, Path(folder))
    args.load = (load, os.getloadavg()[0])
    text = report(results, args)
    matnet.io.atomic_write(args.out, text.encode())
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
