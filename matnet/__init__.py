"""matnet: dense neural networks in matrix form.

The article's formulas, batch-major (rows are examples), W of shape (n_in, n_out)::

    Z = A_prev @ W + b        A = act(Z)
    dW = A_prev.T @ dZ        db = dZ.sum(axis=0, keepdims=True)        dA_prev = dZ @ W.T

Quick start::

    import matnet
    model = matnet.MLP([64, 64, 10], activation="relu", loss="cross_entropy", seed=0)
    history = model.fit(X_train, y_train, optimizer="adam", epochs=30, batch_size=32,
                        validation_fraction=0.1, early_stopping=True)
    accuracy = (model.predict(X_test) == y_test).mean()
    matnet.save(model, "digits.safetensors")
"""

from matnet import distributed, functional, metrics, tabular
from matnet.activations import ACTIVATION_NAMES, get_activation, register_activation
from matnet.errors import (
    CheckpointInUseError,
    MatnetError,
    ModelFileError,
    NotFittedError,
    TrainingDivergedError,
)
from matnet.explain import explain
from matnet.export import from_torch, to_onnx, to_torch, to_torch_state_dict
from matnet.gradcheck import gradcheck, numerical_gradient
from matnet.io import load, save
from matnet.layers import Activation, Dense, Dropout, Layer, Standardize, register_layer
from matnet.losses import (
    LOSS_NAMES,
    BinaryCrossEntropy,
    Loss,
    MeanSquaredError,
    PoissonLoss,
    SoftmaxCrossEntropy,
    get_loss,
    register_loss,
)
from matnet.mlp import MLP
from matnet.model import Sequential
from matnet.optim import OPTIMIZER_NAMES, SGD, Adam, AdamW, Optimizer, get_optimizer
from matnet.schedules import (
    Constant,
    CosineDecay,
    ExponentialDecay,
    FlatCos,
    ReduceLROnPlateau,
    Schedule,
    StepDecay,
    get_schedule,
)
from matnet.training import Callback, DropoutSchedule, History, WeightDecaySchedule, fit

__version__ = "0.2.0"

__all__ = [
    "ACTIVATION_NAMES",
    "LOSS_NAMES",
    "MLP",
    "OPTIMIZER_NAMES",
    "PoissonLoss",
    "Standardize",
    "register_activation",
    "register_layer",
    "register_loss",
    "SGD",
    "Activation",
    "Adam",
    "AdamW",
    "BinaryCrossEntropy",
    "Callback",
    "Constant",
    "CosineDecay",
    "Dense",
    "Dropout",
    "DropoutSchedule",
    "ExponentialDecay",
    "FlatCos",
    "History",
    "Layer",
    "Loss",
    "MatnetError",
    "CheckpointInUseError",
    "MeanSquaredError",
    "ModelFileError",
    "NotFittedError",
    "Optimizer",
    "ReduceLROnPlateau",
    "Schedule",
    "Sequential",
    "SoftmaxCrossEntropy",
    "StepDecay",
    "TrainingDivergedError",
    "WeightDecaySchedule",
    "distributed",
    "tabular",
    "explain",
    "fit",
    "from_torch",
    "functional",
    "get_activation",
    "get_loss",
    "get_optimizer",
    "get_schedule",
    "gradcheck",
    "load",
    "metrics",
    "numerical_gradient",
    "save",
    "to_onnx",
    "to_torch",
    "to_torch_state_dict",
    "__version__",
]
