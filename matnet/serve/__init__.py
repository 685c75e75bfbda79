"""``matnet serve MODEL``: an HTTP prediction service (Starlette on uvicorn, ``pip install
'matnet[serve]'``).

The service answers exactly as ``matnet predict`` does: the model file is read by
:func:`matnet.load` (its preprocessing, class labels, feature names and target scaling come with it),
request bodies are checked like a CSV file given to the command line (the same one-line messages, as
4xx answers), and the answers are computed by the same functions. Concurrent requests are
micro-batched into one matrix product (:mod:`matnet.serve.batching`).

:mod:`~matnet.serve.predictor` turns bodies into matrices and answers into JSON,
:mod:`~matnet.serve.batching` gathers requests, :mod:`~matnet.serve.app` is the HTTP layer.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import sys

from matnet.backend import import_optional
from matnet.errors import UsageError

__all__ = ["serve"]


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, opened before anything is served so a taken port is one clear line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(
            f"--host {host}: not an address of this machine ({exc.strerror})"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(
    path: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_body: int = 8 * 1024 * 1024,
    batch_wait_ms: float = 2.0,
    max_batch_rows: int = 4096,
    batching: bool = True,
    blas_threads: int | None = 1,
) -> int:
    """Serve the model file ``path`` over HTTP until interrupted (Ctrl-C or SIGTERM).

    Parameters
    ----------
    path : str
        A matnet model file.
    host : str
        The address to listen on; the default answers this machine only.
    port : int
        0 picks a free port; the line printed at start names the one chosen.
    max_body : int
        Request bodies over this many bytes get 413.
    batch_wait_ms : float
        How long a batch may wait for requests that are already arriving.
    max_batch_rows : int
        A batch stops gathering at this many rows.
    batching : bool
        False answers each request with its own model call.
    blas_threads : int or None
        Threads for NumPy's BLAS while serving (None: leave BLAS as it is). The default 1 keeps a
        small batch's product on the event loop's thread: with more, every product of a few rows
        wakes BLAS's worker threads, which measured ~10 ms instead of ~10 us per call on a busy
        2-core machine. Concurrency comes from batching requests, not from threads.

    Returns
    -------
    int
        The exit status, 0 after a clean shutdown.
    """
    uvicorn = import_optional("uvicorn", "serve", "matnet serve")
    import_optional("starlette", "serve", "matnet serve")
    from matnet.answers import load_model, model_info, note, note_unscaled
    from matnet.serve.app import build_app
    from matnet.serve.predictor import Predictor

    threadpoolctl = import_optional("threadpoolctl", "serve", "matnet serve")
    model = load_model(path)
    predictor = Predictor(model)
    info = model_info(path)
    note_unscaled(model, path)
    app = build_app(
        predictor,
        info,
        max_body=max_body,
        batch_wait_ms=batch_wait_ms,
        max_batch_rows=max_batch_rows,
        batching=batching,
    )
    sock = _listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    if not _is_loopback(host):
        note(f"listening on {host}, beyond this machine; the service has no authentication")
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    kind = "micro-batched" if batching else "one model call per request"
    print(
        f"matnet serve: {path} ({info['task']}, {info['n_features']} features) on "
        f"http://{shown}:{bound_port} ({kind}); POST /predict, GET /health, GET /model; "
        "Ctrl-C stops",
        flush=True,
    )
    config = uvicorn.Config(app, log_level="warning", access_log=True, lifespan="on")
    # One access-log line per request on stdout, through uvicorn's own logging ('127.0.0.1:5123
    # - "POST /predict HTTP/1.1" 200'); its other messages stay at warnings.
    logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGINT or SIGTERM and then re-raises the signal to the
    # handler it found; stopping is this command's normal end, so that ends in exit status 0.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    limits = None
    if blas_threads is not None:
        limits = threadpoolctl.threadpool_limits(blas_threads, user_api="blas")
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
        if limits is not None:
            limits.restore_original_limits()
    print("matnet serve: stopped", file=sys.stderr, flush=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
