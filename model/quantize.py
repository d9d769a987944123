"""int8 serving: dynamic quantization of the recurrent encoder and the output layer at load.

Weights stay float32 in the artifact; a model served in int8 is quantized when its worker
loads it (``torch.ao.quantization.quantize_dynamic``: int8 weights, activations quantized per
batch on the fly), so one artifact serves both ways and the choice is a setting. CPU only:
the quantized kernels are FBGEMM/QNNPACK ones. Whether it pays is measured per model
(``python -m bench.frontier``): the card's ``precision`` is int8 only where int8 lost at most
0.2 F1 on every casing.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from tagserve.model.artifact import ModelBundle
from tagserve.model.card import Precision

PRECISIONS: tuple[Precision, ...] = ("float32", "int8")


def with_precision(bundle: ModelBundle, precision: Precision) -> ModelBundle:
    """``bundle`` served in ``precision``: unchanged for float32; for int8 its LSTM/GRU and
    output layer replaced by dynamically quantized copies (the bundle is changed in place)."""
    if precision == "float32":
        return bundle
    if precision != "int8":
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    network = bundle.network
    device = next(network.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"int8 serving runs on the CPU only, the model is on {device}")
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which has no CPU LSTM.
        warnings.simplefilter("ignore")
        network.rnn = torch.ao.quantization.quantize_dynamic(
            nn.Sequential(network.rnn), {nn.LSTM, nn.GRU}, dtype=torch.qint8
        )[0]
        network.emission = torch.ao.quantization.quantize_dynamic(
            nn.Sequential(network.emission), {nn.Linear}, dtype=torch.qint8
        )[0]
    return bundle
