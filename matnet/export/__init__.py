"""Models that leave matnet: the whole model as an ONNX graph (:func:`to_onnx`), and its weights
as a PyTorch ``nn.Sequential`` state dict and back (:func:`to_torch_state_dict`,
:func:`to_torch`, :func:`from_torch`).

An exporter sits beside :mod:`matnet.io` in matnet's import order; the libraries it writes for
(``onnx``, ``torch``) are imported inside the functions that need them.
"""

from matnet.export.onnx import DEFAULT_OPSET, OnnxGraph, register_onnx, to_onnx
from matnet.export.pytorch import (
    from_torch,
    register_torch,
    to_torch,
    to_torch_state_dict,
    torch_module,
)

__all__ = [
    "DEFAULT_OPSET",
    "OnnxGraph",
    "from_torch",
    "register_onnx",
    "register_torch",
    "to_onnx",
    "to_torch",
    "to_torch_state_dict",
    "torch_module",
]
