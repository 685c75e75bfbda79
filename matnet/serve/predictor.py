"""The model behind ``matnet serve``: request bodies in, the answers of ``matnet predict`` out.

Nothing here knows HTTP beyond status codes: :class:`Predictor` turns a body (JSON rows or CSV text)
into a validated float64 matrix, answers a matrix with the very functions ``matnet predict`` uses
(:func:`matnet.answers.decisions`, :func:`~matnet.answers.class_proba`,
:func:`~matnet.answers.predicted_values`), and turns a request's slice of the answer into JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from matnet import datasets
from matnet.answers import (
    check_width,
    class_labels,
    class_proba,
    decisions,
    is_classifier,
    loss_of,
    predicted_values,
    target_name,
)
from matnet.errors import RequestError, UsageError
from matnet.model import Sequential
from matnet.validation import check_feature_rows, key_mismatch

__all__ = ["Predictor", "plain_json", "wants_proba"]

SOURCE = "request body"


def wants_proba(value: Any, where: str) -> bool:
    """``?proba=1`` / ``true`` / ``0`` / ``false``, or a JSON boolean; anything else is a 400."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "0", "false", "no"):
        return value.strip().lower() in ("1", "true", "yes")
    raise RequestError(f"{where} must be true or false (or 1 or 0), not {value!r}", 400)


def plain_json(value: Any) -> Any:
    """``value`` with NumPy scalars as Python ones and non-finite floats as null (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Predictor:
    """A loaded model and what a request needs of it.

    Parameters
    ----------
    model : Sequential
        From :func:`matnet.answers.load_model`: it has a loss, so its outputs mean something.

    Raises
    ------
    UsageError
        For a multi-label classifier, which ``matnet predict`` cannot answer as one class either.
    """

    def __init__(self, model: Sequential) -> None:
        self.model = model
        self.classifier = is_classifier(model)
        loss = loss_of(model)
        if self.classifier and not loss.exclusive and model.n_outputs > 1:
            raise UsageError(
                f"the model makes {model.n_outputs} independent yes/no decisions per row "
                "(multi-label), which the service cannot answer as one class; use "
                "matnet.load(MODEL).predict(X) in Python"
            )
        self.labels = plain_json(class_labels(model)) if self.classifier else None
        # A JSON row may carry the target column, as a CSV given to `matnet predict` may.
        target = target_name(model)
        self.ignored = (target,) if target else ()

    # --- requests in ---------------------------------------------------------------------------

    def rows_from_json(self, body: bytes, proba: bool) -> tuple[np.ndarray, bool]:
        """``body`` as a list of rows, or ``{"rows": [...], "proba": true}``; returns (X, proba)."""
        try:
            payload = json.loads(body)
        except UnicodeDecodeError as exc:
            raise RequestError(f"{SOURCE}: not UTF-8 text ({exc.reason})", 400) from None
        except json.JSONDecodeError as exc:
            raise RequestError(
                f"{SOURCE}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
                400,
            ) from None
        if isinstance(payload, dict):
            unknown = sorted(set(payload) - {"rows", "proba"})
            if "rows" not in payload or unknown:
                raise RequestError(
                    f'{SOURCE}: a JSON object must be {{"rows": [...], "proba": false}}'
                    + (f"; unknown field {unknown[0]!r}" if unknown else "; 'rows' is missing"),
                    422,
                )
            if "proba" in payload:
                proba = wants_proba(payload["proba"], "the field 'proba'")
            payload = payload["rows"]
        if self.model.takes_table:  # raw cells (text, gaps): the model's first layer encodes them
            return self._table_rows(payload), proba
        try:
            X = check_feature_rows(
                payload,
                self.model.n_features,
                self.model.feature_names,
                ignored=self.ignored,
                source=SOURCE,
            )
        except ValueError as exc:
            raise RequestError(str(exc), 422) from None
        return X, proba

    def _table_rows(self, payload: Any) -> np.ndarray:
        """JSON rows for a table model as a 2-D object array of raw cells in its column order."""
        names = list(self.model.feature_names or [])
        if not isinstance(payload, list) or not payload:
            raise RequestError(f"{SOURCE}: give a non-empty JSON list of rows", 422)
        cells = []
        for i, row in enumerate(payload):
            if isinstance(row, dict):
                problem = key_mismatch(list(row), names, self.ignored)
                if problem:
                    raise RequestError(f"{SOURCE}, row {i}: {problem}", 422)
                cells.append([row[name] for name in names])
            elif isinstance(row, list) and len(row) == len(names):
                cells.append(row)
            else:
                raise RequestError(
                    f"{SOURCE}, row {i}: give an object keyed by feature name or a list of "
                    f"{len(names)} cells",
                    422,
                )
        X = np.empty((len(cells), len(names)), dtype=object)
        X[...] = cells
        try:
            self.model.input_matrix(X)  # the same checks predict makes, as a 422
        except (ValueError, TypeError) as exc:
            raise RequestError(f"{SOURCE}: {exc}", 422) from None
        return X

    def rows_from_csv(self, body: bytes) -> np.ndarray:
        """A CSV body read as ``matnet predict`` reads a CSV file: the same checks and messages."""
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise RequestError(
                f"{SOURCE}: not UTF-8 text ({exc.reason} at byte {exc.start})", 400
            ) from None
        try:
            table = datasets.read_csv_text(
                text,
                SOURCE,
                target_name(self.model),
                require_target=False,
                features=self.model.feature_names,
                raw=self.model.takes_table,
            )
            check_width(self.model, table, SOURCE)
        except ValueError as exc:
            raise RequestError(str(exc), 422) from None
        return table.X

    def check_proba(self, proba: bool) -> None:
        if proba and not self.classifier:
            raise RequestError("proba gives class probabilities; this model is a regressor", 422)

    # --- the model -----------------------------------------------------------------------------

    def compute(self, X: np.ndarray, want_proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Decisions (labels, or values of shape (n, n_outputs)) and, if asked, probabilities
        of shape (n, k), for the rows of X: what ``matnet predict`` computes for them."""
        if not self.classifier:
            return predicted_values(self.model, X), None
        P = class_proba(self.model, X) if want_proba else None
        return decisions(self.model, X), P

    # --- answers out ---------------------------------------------------------------------------

    def answer(self, decided: np.ndarray, P: np.ndarray | None) -> dict[str, Any]:
        """The JSON of one request's rows: ``predictions`` (and ``classes``/``probabilities``)."""
        if not self.classifier:
            values = decided[:, 0] if decided.shape[1] == 1 else decided
            return {"predictions": values.tolist()}
        result: dict[str, Any] = {"predictions": plain_json(decided.tolist())}
        if P is not None:
            result["classes"] = self.labels
            result["probabilities"] = P.tolist()
        return result
