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
from matnet.backend import Backend, get_backend, resolve_dtype, to_host
from matnet.flat import allocate, bind_params, bind_state
from matnet.layers import Activation, Dense, Layer, layer_from_config
from matnet.losses import Loss, get_loss
from matnet.plan import forward_plans
from matnet.plan import logits as inference_logits
from matnet.summary import summary_text
from matnet.task import Task, with_fit_signature
from matnet.validation import as_generator

#: The training loop, installed by :mod:`matnet.training` (which imports this module): the engine
#: never imports its trainer, so the import graph has no cycle.
_TRAINER: Callable[..., Any] | None = None


def install_trainer(fit: Callable[..., Any]) -> None:
    """Make ``Sequential.fit`` call ``fit(model, X, y, config, **options)``."""
    global _TRAINER
    _TRAINER = fit


__all__ = ["Sequential"]

Array = Any

# forward() on more than twice this many rows runs all layers one block of rows at a time, for the
# same reason (the whole batch's buffers are still filled, so backward sees the whole batch).
ROW_BLOCK = 2048


class _TaskField:
    """A model attribute that is the task layer's (``model.classes`` is ``model.task.classes``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, model: Any, owner: Any = None) -> Any:
        return self if model is None else getattr(model.task, self.name)

    def __set__(self, model: Any, value: Any) -> None:
        setattr(model.task, self.name, value)


class Sequential:
    """A chain of layers that owns the flat parameter and gradient vectors (:mod:`matnet.flat`).

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

    # Set by matnet.flat.allocate: the flat vectors and their views, keyed "0.W", "0.b", ...
    n_params: int
    n_decay: int
    n_state: int
    flat_params: Array
    flat_grads: Array
    flat_state: Array
    params: dict[str, Array]
    grads: dict[str, Array]
    slices: dict[str, slice]
    state: dict[str, Array]

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
        #: What the inputs and outputs mean (class labels, feature names, target scaling): the
        #: task layer, which turns a user's rows into matrices and logits into answers.
        self.task = Task()
        # Layers compute in shared buffers: one inference at a time per model, so predict() is safe
        # to call from several threads; fit holds the lock for each step, so a predict() during
        # training waits for the step to end. Reentrant: a loss or callback may predict in a step.
        self._lock = threading.RLock()
        self.n_features = layers[0].n_in
        #: True when the first layer reads raw tables (a TableInput): fit and predict take a
        #: DataFrame or a 2-D object array and the columns are the TableInput's.
        self.takes_table = bool(layers[0].takes_table)
        if self.takes_table:
            self.task.feature_names = list(layers[0].names)  # type: ignore[attr-defined]
        width = self.n_features
        for layer in layers:
            width = layer.output_width(width)
        self.n_outputs = width
        self._wire_layers()
        self.backend = Backend()
        allocate(self)  # every parameter, gradient and piece of state a view into a flat vector
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
        # The forward plans, chosen once (matnet.plan): with the C kernels a Dense followed by an
        # in-place ReLU runs as one step.
        self._fused_plan, self._checks_first, self._steps = forward_plans(layers)

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
        bind_params(self, flat_params, target.xp.zeros_like(flat_params))
        state = to_host(self.flat_state)
        bind_state(self, target.asarray(state) if not target.is_host else state.copy())
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
        layer's product (see matnet.plan.logits)."""
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
        """:meth:`logits` of rows already in the layers' form (:meth:`input_matrix`'s output, what
        training runs on), in chunks, with NaN and infinity named (:func:`matnet.plan.logits`)."""
        return inference_logits(self, X)

    # --- the task layer's answers (matnet.task), for the model's own users -----------------

    # What the inputs and outputs mean lives in the task layer; these read and write it there.
    classes = _TaskField("classes")
    feature_names = _TaskField("feature_names")
    target_scaling = _TaskField("target_scaling")

    def input_matrix(self, X: Any, *, finite: bool = True) -> np.ndarray:
        """:meth:`matnet.task.Task.input_matrix`: the float matrix the layers run on."""
        return self.task.input_matrix(self, X, finite=finite)

    def encode_targets(self, y: Any, n_samples: int, loss: Loss | None = None) -> np.ndarray:
        """:meth:`matnet.task.Task.encode_targets`: targets in the form the loss trains on."""
        return self.task.encode_targets(self, y, n_samples, loss)

    def predict(self, X: Array) -> Array:
        """:meth:`matnet.task.Task.predict`: labels, 0/1 labels, or values in y's units."""
        return self.task.predict(self, X)

    def predict_proba(self, X: Array) -> Array:
        """:meth:`matnet.task.Task.predict_proba`: the loss's link of the logits."""
        return self.task.predict_proba(self, X)

    def evaluate(self, X: Array, y: Array) -> dict[str, float]:
        """:meth:`matnet.task.Task.evaluate`: mean loss and the loss's metric."""
        return self.task.evaluate(self, X, y)

    @with_fit_signature
    def fit(self, X: Array, y: Array, config: Any = None, **options: Any) -> Any:
        """Train on ``(X, y)``: :func:`matnet.fit` with this model and a
        :class:`~matnet.task.FitConfig` (``options`` replace its fields; each is documented in
        :func:`matnet.fit`). Returns the :class:`~matnet.History`."""
        if _TRAINER is None:  # pragma: no cover - matnet/__init__ imports matnet.training
            raise RuntimeError("import matnet (which installs the training loop) before fit")
        return _TRAINER(self, X, y, config, **options)

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
            "task": self.task,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        model = Sequential.from_config(state["config"])
        self.__dict__.update(model.__dict__)
        self.flat_params[...] = state["flat_params"]
        self.flat_state[...] = state.get("flat_state", self.flat_state)
        self.metadata = state.get("metadata", {})
        self.task = state.get("task", self.task)

    # --- display ----------------------------------------------------------------------------

    def summary(self, print_fn: Callable[[str], None] | None = print) -> str:
        """Print (and return) one line per layer with the shapes of W and b and its parameter
        count (:func:`matnet.summary.summary_text`)."""
        text = summary_text(self)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self) -> str:
        return f"Sequential([{', '.join(map(repr, self.layers))}])"
