"""Sequential models: layers chained, with every parameter a view into one flat vector.

Parameter keys are ``"<layer index>.<name>"`` (``"0.W"``, ``"0.b"``, ``"2.W"``, ...), the one scheme used
by the optimizer state, model files, :func:`matnet.gradcheck` and the estimators' ``coefs_``. In the flat
vectors all weights come first (``flat_params[:n_decay]``), then the biases, so L2 and weight decay touch
a prefix slice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from matnet import _accel
from matnet.activations import get_activation
from matnet.backend import Backend, get_backend, resolve_dtype, to_host
from matnet.errors import NonFiniteProductError, NotFittedError
from matnet.layers import Activation, Dense, Dropout, Layer, Standardize, layer_from_config
from matnet.losses import Loss, get_loss
from matnet.validation import as_generator, check_features, check_finite_rows, check_targets

__all__ = ["Sequential", "MLP"]

Array = Any

# Rows per forward pass in predict: large enough for BLAS to run at full speed, small enough that one
# chunk's activations (2048 x 256 float32 = 2 MiB) stay in cache for the bias and activation passes
# that follow each product (measured in benchmarks/predict_chunks.py; see benchmarks/README.md).
PREDICT_CHUNK = 2048
# forward() on more than twice this many rows runs all layers one block of rows at a time, for the
# same reason (the whole batch's buffers are still filled, so backward sees the whole batch).
ROW_BLOCK = 2048


class Sequential:
    """A chain of layers that owns the flat parameter and gradient vectors.

    Parameters
    ----------
    layers : sequence of Layer
        The first layer must fix the input width (a :class:`~matnet.layers.Dense`).
    dtype : {"float32", "float64"}
        Precision of parameters, activations and gradients.
    seed : int or numpy.random.Generator, optional
        Source of the initial weights.
    loss : str or Loss, optional
        The training loss; it also supplies the output link for :meth:`predict_proba`.
        :func:`matnet.fit` sets it when given one.
    backend : {"numpy", "cupy"}, optional
        The array library for parameters and layer buffers (default NumPy). See :meth:`to`.
    device : str, optional
        ``"cpu"`` or ``"cuda:<index>"`` (which implies CuPy).
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        *,
        dtype: Any = "float32",
        seed: int | np.random.Generator | None = 0,
        loss: str | Loss | None = None,
        backend: str | Backend | None = None,
        device: str | None = None,
    ) -> None:
        target = get_backend(backend, device)  # fails before any work when CuPy is missing
        layers = list(layers)
        for layer in layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"{layer!r} is not a matnet layer")
        if not layers or layers[0].n_in is None:
            raise ValueError(
                "a Sequential model needs at least one layer, and its first layer must fix the "
                "input width (Dense, Standardize or TableInput)"
            )
        self.layers = layers
        self.dtype = resolve_dtype(dtype)
        self.loss = None if loss is None else get_loss(loss)
        #: JSON-serializable extras saved in model files (a training record, notes, ...).
        self.metadata: dict[str, Any] = {}
        #: The class labels (any JSON values) that the outputs stand for, or None: class indices.
        self.classes: list[Any] | None = None
        #: The input columns' names when known; a DataFrame given to predict is matched by name.
        self.feature_names: list[str] | None = None
        #: A regressor's target scaling ``(mean, scale)``, each of shape (n_outputs,), or None:
        #: the model learns ``(y - mean) / scale`` and predicts ``Z * scale + mean``.
        self.target_scaling: tuple[np.ndarray, np.ndarray] | None = None
        # Layers compute in shared buffers: one inference at a time per model, so predict() is safe
        # to call from several threads; fit holds the lock for each step, so a predict() during
        # training waits for the step to end. Reentrant: a loss or callback may predict in a step.
        self._lock = threading.RLock()
        self.n_features = layers[0].n_in
        #: True when the first layer reads raw tables (a TableInput): fit and predict take a
        #: DataFrame or a 2-D object array and the columns are the TableInput's.
        self.takes_table = bool(layers[0].takes_table)
        if self.takes_table:
            self.feature_names = list(layers[0].names)  # type: ignore[attr-defined]
        width = self.n_features
        for layer in layers:
            width = layer.output_width(width)
        self.n_outputs = width
        self._wire_layers()
        self.backend = Backend()
        self._allocate()
        self.initialize(seed)
        if not target.is_host:
            self.to(target)

    # --- structure --------------------------------------------------------------------------

    def _wire_layers(self) -> None:
        layers = self.layers
        self._row_blocks = all(layer.row_blocks for layer in layers)
        self._random = any(layer.random for layer in layers)
        for i, layer in enumerate(layers):
            # The gradient of a layer's input is wanted only when a layer before it has parameters
            # (the first Dense behind a Standardize layer skips dA_prev = dZ @ W.T, like a first
            # layer does).
            layer.needs_input_grad = any(earlier.param_specs() for earlier in layers[:i])
            if isinstance(layer, Activation):
                # Write A over Z when Z is a buffer of the previous layer that only this layer reads.
                layer.inplace = i > 0 and layers[i - 1].owns_output
        # The forward plans, chosen here once: (layer, fused with the ReLU after it). With matnet's
        # C kernels a Dense followed by an in-place ReLU runs as one step (bias and ReLU in one
        # pass, the ReLU's backward with db in one pass); explain and single layers see them apart.
        self._plain_plan = [(layer, False) for layer in layers]
        self._fused_plan = []
        i = 0
        while i < len(layers):
            after = layers[i + 1] if i + 1 < len(layers) else None
            fuse = (
                _plain_dense(layers[i])
                and isinstance(after, Activation)
                and after.fn.name == "relu"
                and after.inplace
            )
            self._fused_plan.append((layers[i], fuse))
            i += 2 if fuse else 1
        # The first Dense layer may check its own product for NaN/inf at inference (see logits).
        self._checks_first = _plain_dense(layers[0])
        self._steps = {
            (fused, checked): [
                _step(layer, relu, checked and k == 0)
                for k, (layer, relu) in enumerate(self._fused_plan if fused else self._plain_plan)
            ]
            for fused in (False, True)
            for checked in ((False, True) if self._checks_first else (False,))
        }

    def _allocate(self) -> None:
        specs = [
            (f"{i}.{name}", i, name, shape, decayed)
            for i, layer in enumerate(self.layers)
            for name, shape, decayed in layer.param_specs()
        ]
        specs.sort(key=lambda s: not s[4])  # weights first; stable, so layer order is kept
        sizes = [int(np.prod(shape)) for *_, shape, _ in specs]
        self.n_params = sum(sizes)
        self.n_decay = sum(size for size, spec in zip(sizes, specs, strict=True) if spec[4])
        self._specs = specs
        self._bind_flat(
            np.zeros(self.n_params, dtype=self.dtype), np.zeros(self.n_params, dtype=self.dtype)
        )
        self._state_specs = [
            (f"{i}.{name}", i, name, shape)
            for i, layer in enumerate(self.layers)
            for name, shape in layer.state_specs()
        ]
        self.n_state = sum(int(np.prod(shape)) for *_, shape in self._state_specs)
        self._bind_state(np.zeros(self.n_state, dtype=self.dtype))

    def _bind_state(self, flat_state: Array) -> None:
        """Make every piece of non-trainable state a view into ``flat_state``."""
        self.flat_state = flat_state
        #: Non-trainable state (``"0.mean"``, ...): saved and moved with the model, never trained.
        self.state: dict[str, Array] = {}
        per_layer: dict[int, dict] = {i: {} for i in range(len(self.layers))}
        offset = 0
        for key, i, name, shape in self._state_specs:
            size = int(np.prod(shape))
            self.state[key] = per_layer[i][name] = flat_state[offset : offset + size].reshape(shape)
            offset += size
        for i, layer in enumerate(self.layers):
            layer.bind_state(per_layer[i])

    def _bind_flat(self, flat_params: Array, flat_grads: Array) -> None:
        """Make every parameter and gradient a view into these two flat vectors."""
        specs = self._specs
        sizes = [int(np.prod(shape)) for *_, shape, _ in specs]
        self.flat_params, self.flat_grads = flat_params, flat_grads
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        #: Where each parameter lives in the flat vectors.
        self.slices: dict[str, slice] = {}
        per_layer: dict[int, tuple[dict, dict]] = {i: ({}, {}) for i in range(len(self.layers))}
        offset = 0
        for (key, i, name, shape, _), size in zip(specs, sizes, strict=True):
            p = self.flat_params[offset : offset + size].reshape(shape)
            g = self.flat_grads[offset : offset + size].reshape(shape)
            self.params[key], self.grads[key] = p, g
            self.slices[key] = slice(offset, offset + size)
            per_layer[i][0][name], per_layer[i][1][name] = p, g
            offset += size
        self.params = {key: self.params[key] for key, *_ in sorted(specs, key=lambda s: s[1])}
        self.grads = {key: self.grads[key] for key in self.params}
        for i, layer in enumerate(self.layers):
            layer.bind(*per_layer[i])

    def initialize(self, seed: int | np.random.Generator | None = 0) -> None:
        """Redraw every parameter (He/Glorot weights, zero biases) from ``seed``.

        The values are drawn on the host whatever the backend, so CPU and GPU models from one seed
        start from the same weights.
        """
        rng = as_generator(seed)
        if self.backend.is_host:
            for layer in self.layers:
                layer.initialize(rng)
            return
        target = self.backend
        self.to("cpu")
        self.initialize(rng)
        self.to(target)

    def adapt(self, X: Array) -> None:
        """Fit the non-trainable state of every layer that still needs it (a :class:`Standardize`
        layer's mean and scale, say) from the training rows ``X``; :func:`matnet.fit` calls this
        before the first step. Layers already fitted keep their state.

        Parameters
        ----------
        X : array of shape (n, n_features), the model's dtype, on the host
        """
        pending = [i for i, layer in enumerate(self.layers) if layer.needs_adapt()]
        if not pending:
            return
        A = X
        for i, layer in enumerate(self.layers[: pending[-1] + 1]):
            if i in pending:
                layer.adapt(to_host(A))
            A, _ = layer.forward(A, False, None, None)

    def to(self, device: str | Backend) -> Sequential:
        """Move the parameters to ``device`` (``"cpu"``, ``"cuda:0"``, or a Backend); returns self.

        Gradients restart at zero and layer workspaces are reallocated on the new device. An
        optimizer's state does not move: build the optimizer after moving the model. Data given to
        :meth:`forward`, :meth:`predict` and :func:`matnet.fit` stays on the host; each batch is copied
        to the device and the logits come back (the loss runs on the host on an (n, n_outputs) array).
        """
        target = device if isinstance(device, Backend) else get_backend(device=device)
        if target == self.backend:
            return self
        host = to_host(self.flat_params)
        flat_params = target.asarray(host) if not target.is_host else host.copy()
        self._bind_flat(flat_params, target.xp.zeros_like(flat_params))
        state = to_host(self.flat_state)
        self._bind_state(target.asarray(state) if not target.is_host else state.copy())
        for layer in self.layers:
            layer._buffers = {}
        self.backend = target
        return self

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda:<index>"``: where the parameters live."""
        return self.backend.device

    @property
    def dense_layers(self) -> list[Dense]:
        return [layer for layer in self.layers if isinstance(layer, Dense)]

    # --- forward and backward ---------------------------------------------------------------

    def forward(
        self, X: Array, *, training: bool = False, rng: np.random.Generator | None = None
    ) -> tuple[Array, Callable[[Array], None]]:
        """Run the layers on a batch.

        Parameters
        ----------
        X : array of shape (n, n_features), the model's dtype
        training : bool
            Enables dropout (which then needs ``rng``).

        Returns
        -------
        Z : array of shape (n, n_outputs)
            The logits, in a buffer valid until the next forward pass (a host copy when the
            model lives on a GPU).
        backward : callable
            ``backward(dZ)`` fills :attr:`flat_grads` (through the views in :attr:`grads`).
            It may overwrite ``dZ``.
        """
        return self._run(X, training, rng, check_first=False)

    def _run(
        self, X: Array, training: bool, rng: np.random.Generator | None, check_first: bool
    ) -> tuple[Array, Callable[[Array], None]]:
        """forward(); ``check_first`` raises NonFiniteProductError for a NaN or infinity in the first
        layer's product (see _forward_checked)."""
        backend = self.backend
        X = X if backend.is_host else backend.asarray(X)  # the batch goes to the device
        n = X.shape[0]
        blocks: list[slice | None] = [None]
        if n > 2 * ROW_BLOCK and self._row_blocks and not (training and self._random):
            blocks = [slice(start, start + ROW_BLOCK) for start in range(0, n, ROW_BLOCK)]
        steps = self._steps[backend.is_host and _accel.kernels is not None, check_first]
        for rows in blocks:
            A, backwards = X, []
            for step in steps:
                A, backward = step(A, training, rng, rows)
                backwards.append(backward)

        def backward_all(dZ: Array) -> None:
            if not backend.is_host:
                dZ = backend.asarray(dZ)
            for backward in reversed(backwards):
                dZ = backward(dZ)
                if dZ is None:  # no layer further back has parameters
                    break

        return (A if backend.is_host else to_host(A)), backward_all

    def logits(self, X: Array) -> Array:
        """The raw outputs (before the loss's link), as a new array of shape (n, n_outputs)."""
        return self.logits_from_matrix(self.input_matrix(X, finite=False))

    def logits_from_matrix(self, X: np.ndarray) -> Array:
        """:meth:`logits` of rows already in the layers' form, the output of :meth:`input_matrix`
        (what training runs on). A table model's matrix holds category codes, which are no raw
        cells: encoding them again would read every category as unknown, so validation during
        training comes here instead of to :meth:`logits`."""
        X = np.asarray(X, dtype=self.dtype)  # as input_matrix gives it (a block of Rows may not be)
        out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
        with self._lock:
            for start in range(0, X.shape[0], PREDICT_CHUNK):
                out[start : start + PREDICT_CHUNK] = self._forward_checked(
                    X[start : start + PREDICT_CHUNK], start
                )
        return out

    def _forward_checked(self, X: np.ndarray, first_row: int) -> Array:
        """forward() for inference on host rows ``first_row, ...``, raising ValueError for NaN or
        infinity in ``X`` on the way.

        A NaN or infinity in row i of X makes row i of the first product ``X @ W1`` non-finite
        (NaN and inf propagate through every sum of products, and 0 * inf is NaN), so when that
        product is the narrower of the two, the check runs on it, in cache (or inside the fused
        bias+ReLU kernel, for free), and scans X only to name the entry, or to find that the product
        overflowed from finite X, which is no input error. On 10,000 x 784 -> 256 that takes
        predict_proba from 0.85 to 0.92 of the forward products' time.
        """

        first = self.layers[0]
        if self.takes_table:  # NaN in the codes are missing cells, which the layers impute
            Z, _ = self.forward(X)
            return Z
        if not (self.backend.is_host and self._checks_first and first.n_out <= first.n_in):  # type: ignore[attr-defined]
            check_finite_rows(X, first_row)
            Z, _ = self.forward(X)
        else:
            try:
                with np.errstate(invalid="ignore"):  # 0 * inf in the product: reported below
                    Z, _ = self._run(X, False, None, check_first=True)
            except NonFiniteProductError:
                check_finite_rows(X, first_row)  # raises, naming the entry
                Z, _ = self.forward(X)
        return Z

    def _require_loss(self) -> Loss:
        if self.loss is None:
            raise NotFittedError(
                "this model has no loss, so its outputs have no link; pass loss=... to the model "
                "or to fit()"
            )
        return self.loss

    # --- the model's own view of raw inputs and answers ---------------------------------------

    def input_matrix(self, X: Any, *, finite: bool = True) -> np.ndarray:
        """The float matrix the layers run on: a table model's codes of the raw table (see
        :meth:`matnet.layers.TableInput.encode`), else the checked feature matrix.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n, n_features)
            For a table model also a mapping of columns or a 2-D object array of raw cells.
        finite : bool
            Check a numeric model's features for NaN and infinity here.

        Returns
        -------
        ndarray of shape (n, n_features), the model's dtype
        """
        if self.takes_table:
            return self.layers[0].encode(X, dtype=self.dtype)  # type: ignore[attr-defined]
        return check_features(self.select_features(X), self.n_features, self.dtype, finite=finite)

    def select_features(self, X: Any) -> Any:
        """``X`` with its columns in the model's order: a DataFrame (anything with ``columns``) is
        matched by name when the model knows its :attr:`feature_names`; arrays are taken as they are.

        Raises
        ------
        ValueError
            When a DataFrame lacks a feature the model was trained on.
        """
        names = self.feature_names
        columns = getattr(X, "columns", None)
        if names is None or columns is None:
            return X
        columns = [str(c) for c in columns]
        missing = [name for name in names if name not in columns]
        if missing:
            shown = ", ".join(map(repr, missing[:5])) + (", ..." if len(missing) > 5 else "")
            raise ValueError(
                f"X lacks {len(missing)} of the model's {len(names)} features ({shown}); give "
                "a table with every column the model was trained on"
            )
        if columns == names:
            return X
        return X[names] if hasattr(X, "__getitem__") else X

    def _class_labels(self) -> np.ndarray | None:
        """The labels the decisions stand for, when the model has them and they fit its output."""
        if self.classes is None or self.loss is None or self.loss.task != "classification":
            return None
        if len(self.classes) != self._n_classes(self.loss):
            return None  # multi-label: the outputs are independent 0/1 labels
        return np.asarray(self.classes)

    def _n_classes(self, loss: Loss) -> int:
        """How many class labels the outputs stand for: one per output for exclusive classes
        (softmax), two for a single yes/no output; 0 when labels do not apply (multi-label)."""
        if loss.exclusive:
            return self.n_outputs
        return 2 if self.n_outputs == 1 else 0

    def encode_targets(self, y: Any, n_samples: int, loss: Loss | None = None) -> np.ndarray:
        """Targets in the form the loss trains on: labels mapped through :attr:`classes` (learned
        here from non-numeric ``y`` when the model has none), values through :attr:`target_scaling`.

        Raises
        ------
        ValueError
            For a label the model does not know, or targets that do not fit the loss.
        """
        loss = loss or self._require_loss()
        y_array = np.asarray(y) if not hasattr(y, "to_numpy") else y.to_numpy()
        n_classes = self._n_classes(loss)
        if loss.task == "classification" and y_array.ndim == 1 and n_classes:
            if self.classes is None and y_array.dtype.kind in "OUSb":
                classes = [_json_label(c) for c in np.unique(y_array)]
                if len(classes) != n_classes:
                    shown = ", ".join(map(repr, classes[:8])) + (
                        ", ..." if len(classes) > 8 else ""
                    )
                    raise ValueError(
                        f"y holds {len(classes)} distinct labels ({shown}), but the model's "
                        f"{self.n_outputs} output(s) stand for {n_classes} classes; give the last "
                        f"Dense layer {len(classes)} outputs (1 for two classes with binary "
                        "cross-entropy)"
                    )
                self.classes = classes
            if self.classes is not None and len(self.classes) == n_classes:
                y_array = _label_indices(y_array, self.classes)
        Y = check_targets(loss, y_array, n_samples, self.n_outputs, self.dtype)
        if self.target_scaling is not None and loss.task == "regression":
            mean, scale = self.target_scaling
            Y = ((Y - mean) / scale).astype(self.dtype)
        return Y

    def predict(self, X: Array) -> Array:
        """Decisions: class labels (or indices when the model has no :attr:`classes`), 0/1 labels
        (multi-label), or values in the target's own units (regression).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n, n_features)

        Returns
        -------
        array of shape (n,) for a single output or class, else (n, n_outputs)
        """
        loss = self._require_loss()
        result = loss.predict(self.logits(X))
        if loss.task == "regression" and self.target_scaling is not None:
            mean, scale = self.target_scaling
            result = result * scale + mean
        if result.ndim == 2 and result.shape[1] == 1:
            result = result[:, 0]
        labels = self._class_labels()
        return result if labels is None else labels[result]

    def predict_proba(self, X: Array) -> Array:
        """The loss's link applied to the logits: softmax or sigmoid probabilities, columns in the
        order of :attr:`classes`.

        Returns
        -------
        array of shape (n, n_outputs)
        """
        Z = self.logits(X)  # a new array: the probabilities overwrite it
        return self._require_loss().link(Z, out=Z)

    def evaluate(self, X: Array, y: Array) -> dict[str, float]:
        """Mean loss and the loss's metric (accuracy or R²) on ``(X, y)``; ``y`` as for fit
        (labels, or values in the target's own units)."""
        loss = self._require_loss()
        Z = self.logits(X)
        Y = self.encode_targets(y, Z.shape[0], loss)
        value, _ = loss(Z, Y)
        return {"loss": value, loss.metric_name: loss.metric(Z, Y)}

    def fit(
        self,
        X: Array,
        y: Array,
        *,
        loss: str | Loss | None = None,
        optimizer: Any = "adam",
        learning_rate: float | None = None,
        epochs: int = 10,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | np.random.Generator | None = 0,
        validation_data: tuple[Array, Array] | None = None,
        validation_fraction: float = 0.0,
        early_stopping: bool = False,
        patience: int = 10,
        min_delta: float = 0.0,
        schedule: Any = None,
        clip_norm: float | None = None,
        l2: float = 0.0,
        sample_weight: Array | None = None,
        callbacks: Any = None,
        verbose: int = 1,
        checkpoint: Any = None,
        checkpoint_every: int | str = "epoch",
        resume: Any = False,
        on_divergence: str = "raise",
        comm: Any = None,
        rows: Any = None,
        resume_overrides: Any = (),
        threads: int | None = None,
    ) -> Any:
        """Train on ``(X, y)``: :func:`matnet.fit` with this model; every option is documented
        there. Returns the :class:`~matnet.History`."""
        from matnet.training import fit

        options = {k: v for k, v in locals().items() if k not in ("self", "X", "y", "fit")}
        return fit(self, X, y, **options)

    # --- parameters -------------------------------------------------------------------------

    def get_weights(self) -> dict[str, Array]:
        """A copy of every parameter, keyed ``"0.W"``, ``"0.b"``, ..."""
        return {key: np.array(to_host(value), copy=True) for key, value in self.params.items()}

    def set_weights(self, weights: dict[str, Array]) -> None:
        """Copy values into the parameters; keys and shapes must match :attr:`params` exactly."""
        if set(weights) != set(self.params):
            missing = sorted(set(self.params) - set(weights))
            extra = sorted(set(weights) - set(self.params))
            raise ValueError(
                f"weights do not match the model: missing {missing}, unexpected {extra}"
            )
        for key, value in weights.items():
            value = np.asarray(value)
            if value.shape != self.params[key].shape:
                raise ValueError(
                    f"weight {key!r} has shape {value.shape}; the model expects "
                    f"{self.params[key].shape}"
                )
            self.params[key][...] = self.backend.asarray(value)

    def config(self) -> dict[str, Any]:
        """The architecture as plain JSON values: layers, dtype, loss."""
        return {
            "layers": [layer.config() for layer in self.layers],
            "dtype": np.dtype(self.dtype).name,
            "loss": None if self.loss is None else self.loss.config(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], *, dtype: Any = None) -> Sequential:
        """Rebuild a model (with freshly drawn weights) from :meth:`config`."""
        layers = [layer_from_config(c) for c in config["layers"]]
        return cls(layers, dtype=dtype or config.get("dtype", "float32"), loss=config.get("loss"))

    def astype(self, dtype: Any) -> Sequential:
        """A copy of this model with parameters converted to ``dtype``."""
        model = Sequential.from_config(self.config(), dtype=dtype)
        model.flat_params[...] = to_host(self.flat_params)
        model.flat_state[...] = to_host(self.flat_state)
        return model.to(self.backend)

    def copy(self) -> Sequential:
        """An independent copy (same dtype, same weights)."""
        return self.astype(self.dtype)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "config": self.config(),
            "flat_params": to_host(self.flat_params),
            "flat_state": to_host(self.flat_state),
            "metadata": self.metadata,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        model = Sequential.from_config(state["config"])
        self.__dict__.update(model.__dict__)
        self.flat_params[...] = state["flat_params"]
        self.flat_state[...] = state.get("flat_state", self.flat_state)
        self.metadata = state.get("metadata", {})

    # --- display ----------------------------------------------------------------------------

    def summary(self, print_fn: Callable[[str], None] | None = print) -> str:
        """Print (and return) one line per layer with the shapes of W and b and its parameter count."""
        rows = [("#", "layer", "output", "W", "b", "params")]
        width = self.n_features
        for i, layer in enumerate(self.layers):
            width = layer.output_width(width)
            shapes = {name: shape for name, shape, _ in layer.param_specs()}
            count = sum(int(np.prod(shape)) for shape in shapes.values())
            fmt = lambda s: "" if s is None else "(" + ", ".join(map(str, s)) + ")"  # noqa: E731
            rows.append(
                (
                    str(i),
                    repr(layer),
                    f"(n, {width})",
                    fmt(shapes.get("W")),
                    fmt(shapes.get("b")),
                    f"{count:,}" if count else "",
                )
            )
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        loss = f", loss {self.loss.name}" if self.loss is not None else ""
        lines.append(f"{self.n_params:,} parameters ({np.dtype(self.dtype).name}{loss})")
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self) -> str:
        return f"Sequential([{', '.join(map(repr, self.layers))}])"


def MLP(
    sizes: Sequence[int],
    activation: Any = "relu",
    *,
    dropout: float | Sequence[float] = 0.0,
    standardize: bool = False,
    init: str | None = None,
    loss: str | Loss | None = None,
    dtype: Any = "float32",
    seed: int | np.random.Generator | None = 0,
    backend: str | None = None,
    device: str | None = None,
) -> Sequential:
    """A multilayer perceptron ``[n_in, h1, ..., n_out]``: Dense and activation layers, linear output.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first, at least two entries.
    activation : str, dict, Activation, or a sequence of them
        The hidden activation (a registered name, a config dict such as
        ``{"name": "leaky_relu", "alpha": 0.2}``, or an instance), or one per hidden layer.
    dropout : float or sequence of float
        Dropout rate after each hidden activation (one for all, or one per hidden layer).
    standardize : bool
        Put a :class:`~matnet.layers.Standardize` layer in front, so the model takes raw features:
        its mean and scale are fitted from the training rows by :func:`matnet.fit` and saved with
        the model.
    init : str, optional
        Weight initializer; by default the activation's own hint (He for ReLU-like activations,
        Glorot for the others).
    loss : str or Loss, optional
        The loss that the logits feed (its link gives :meth:`Sequential.predict_proba`).
    dtype, seed, backend, device
        As for :class:`Sequential`.

    Examples
    --------
    >>> model = MLP([64, 32, 10], "relu", loss="cross_entropy", seed=0)
    >>> model.n_params
    2410
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"MLP sizes={sizes!r} needs at least an input and an output width")
    n_hidden = len(sizes) - 2
    # One activation (a name, a config dict or an instance) for every hidden layer, or a list.
    one = isinstance(activation, (str, dict)) or not isinstance(activation, Sequence)
    activations = [activation] * n_hidden if one else list(activation)
    rates = [dropout] * n_hidden if isinstance(dropout, (int, float)) else list(dropout)
    if len(activations) != n_hidden:
        raise ValueError(f"{len(activations)} activations given for {n_hidden} hidden layers")
    if len(rates) != n_hidden:
        raise ValueError(f"{len(rates)} dropout rates given for {n_hidden} hidden layers")
    layers: list[Layer] = [Standardize(sizes[0])] if standardize else []
    for i in range(len(sizes) - 1):
        fn = get_activation(activations[i]) if i < n_hidden else None
        # The output layer is linear (the loss owns the link) and has always been drawn He.
        layer_init = init or ("he_normal" if fn is None or fn.init == "he" else "glorot_uniform")
        layers.append(Dense(sizes[i], sizes[i + 1], init=layer_init))
        if fn is not None:
            layers.append(Activation(fn))
            if rates[i]:
                layers.append(Dropout(rates[i]))
    return Sequential(layers, dtype=dtype, seed=seed, loss=loss, backend=backend, device=device)


def _plain_dense(layer: Layer) -> bool:
    """A Dense layer whose forward is Dense's own, so the plan may call its fused form instead."""
    return isinstance(layer, Dense) and type(layer).forward is Dense.forward


def _step(layer: Layer, relu: bool, check_finite: bool) -> Callable:
    """One step of a forward plan, called as ``step(A_prev, training, rng, rows)``."""
    if not (relu or check_finite):  # looked up at each call, so a layer's forward may be replaced
        return lambda A, training, rng, rows: layer.forward(A, training, rng, rows)
    fused = layer.fused_forward  # type: ignore[attr-defined]  # a plain Dense (see _plain_dense)
    return lambda A, training, rng, rows: fused(A, rows, relu=relu, check_finite=check_finite)


def _json_label(value: Any) -> Any:
    """A class label as a plain JSON value (NumPy scalars become Python ones)."""
    return value.item() if isinstance(value, np.generic) else value


def _label_indices(y: np.ndarray, classes: list[Any]) -> np.ndarray:
    """Class indices of the labels ``y`` in ``classes``; an unknown label is an error."""
    lookup = {label: i for i, label in enumerate(classes)}
    try:
        return np.fromiter((lookup[_json_label(v)] for v in y), dtype=np.intp, count=len(y))
    except KeyError as exc:
        shown = ", ".join(map(repr, classes[:12])) + (", ..." if len(classes) > 12 else "")
        raise ValueError(
            f"y holds the label {exc.args[0]!r}, which the model does not know; its classes are "
            f"{shown}"
        ) from None
    except TypeError as exc:  # an unhashable label
        raise ValueError(f"y holds a label that cannot be a class: {exc}") from None
