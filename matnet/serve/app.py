"""The HTTP service: a Starlette application on uvicorn (the ``serve`` extra, imported here only).

Routes: ``POST /predict`` (JSON rows or CSV; labels, values and on request probabilities),
``GET /health`` and ``GET /model`` (the ``matnet info`` view as JSON). Every error is a JSON object
``{"error": "one line"}`` with a 4xx status; an unexpected failure is a 500 with one line, and its
traceback goes to the server's stderr, never to the client.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from typing import Any

from matnet.backend import import_optional
from matnet.errors import RequestError
from matnet.serve.batching import MicroBatcher, run_model
from matnet.serve.predictor import Predictor, plain_json, wants_proba

__all__ = ["build_app"]

_JSON_TYPES = ("application/json",)
_CSV_TYPES = ("text/csv", "application/csv")


async def _read_body(request: Any, limit: int) -> bytes:
    """The body, refused with 413 once it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(f"the request body has {declared} bytes; the limit is {limit}", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"the request body passes the limit of {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(request: Any) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _request_rows(predictor: Predictor, request: Any, max_body: int) -> tuple[Any, bool]:
    """A /predict request's rows (JSON or CSV body) and whether it asks for probabilities."""
    proba = wants_proba(request.query_params.get("proba", "0"), "?proba=")
    body = await _read_body(request, max_body)
    kind = _media_type(request)
    if kind in _CSV_TYPES:
        X = predictor.rows_from_csv(body)
    elif kind in _JSON_TYPES or kind.endswith("+json"):
        X, proba = predictor.rows_from_json(body, proba)
    else:
        raise RequestError(
            f"Content-Type {kind or '(none)'!r} is not served; send application/json "
            "rows or text/csv with a header row",
            415,
        )
    predictor.check_proba(proba)
    return X, proba


def build_app(
    predictor: Predictor,
    info: dict[str, Any],
    *,
    max_body: int,
    batch_wait_ms: float,
    max_batch_rows: int,
    batching: bool,
) -> Any:
    """The Starlette application serving ``predictor``.

    Parameters
    ----------
    predictor : Predictor
    info : dict
        ``GET /model``'s answer (:func:`matnet.answers.model_info`).
    max_body : int
        Bodies larger than this many bytes get 413.
    batch_wait_ms, max_batch_rows : float, int
        See :class:`~matnet.serve.batching.MicroBatcher`.
    batching : bool
        False: each request's rows go through the model alone.
    """
    import_optional("starlette", "serve", "matnet serve")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    batcher = MicroBatcher(predictor.compute, batch_wait_ms / 1000.0, max_batch_rows)
    model_json = plain_json(info)

    def error(message: str, status: int) -> Response:
        return JSONResponse({"error": " ".join(message.split())}, status_code=status)

    async def predict(request: Request) -> Response:
        batcher.incoming += 1
        queued = False
        try:
            X, proba = await _request_rows(predictor, request, max_body)
            batcher.incoming -= 1
            queued = True
            if batching:
                decided, P = await batcher.submit(X, proba)
            else:
                decided, P = await run_model(predictor.compute, X, proba)
                batcher.calls += 1
                batcher.rows += X.shape[0]
            return JSONResponse(predictor.answer(decided, P))
        except RequestError as exc:
            return error(str(exc), exc.status)
        finally:
            if not queued:
                batcher.incoming -= 1

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "batching": batching,
                "model_calls": batcher.calls,
                "rows": batcher.rows,
            }
        )

    async def model(request: Request) -> Response:
        return JSONResponse(model_json)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        return error(f"{request.method} {request.url.path}: {getattr(exc, 'detail', '')}", status)

    async def internal(request: Request, exc: Exception) -> Response:
        traceback.print_exception(exc, file=sys.stderr)
        return error(
            f"internal error ({type(exc).__name__}); the server's log has the details", 500
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        if batching:
            batcher.start()
        yield
        await batcher.stop()

    routes = [
        Route("/predict", predict, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/model", model, methods=["GET"]),
    ]
    from starlette.exceptions import HTTPException

    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: not_found, Exception: internal},
    )
