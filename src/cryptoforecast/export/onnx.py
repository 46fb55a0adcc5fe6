"""Export a pure forecasting net to ONNX and prove onnxruntime computes the same thing.

R10: the exported graph is ``lit.net.eval()`` alone (no scaling, no sigmoid), with a
pinned opset, input ``x [B, L, F]`` float32 and output ``y_hat [B, H]`` (scaled returns or
logits), plus ``attention [B, heads, L, L]`` for nets that expose their attention weights. The
batch axis is dynamic and the example batch has 2 rows: a batch-1 example can freeze the batch
axis (darts' "LSTM ... batch size of 1" problem), which the B=7 parity check would catch.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

OPSET = 17
#: Parity tolerance of nets, on the net's (scaled) outputs: float32 graphs agree to ~1e-7.
NET_ATOL = 1e-5
PARITY_BATCHES = (1, 7)


class ExportError(RuntimeError):
    """The run cannot be exported, or the exported graph disagrees with the trained model."""


class _WithAttention(nn.Module):
    """``x -> (y_hat, attention)`` for nets whose ``forward`` takes ``return_attention``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # [B, L, F] -> [B, H], [B, h, L, L]
        y_hat, attn = self.net(x, return_attention=True)
        return y_hat, attn


def has_attention(net: nn.Module) -> bool:
    """Whether ``net.forward`` accepts ``return_attention`` (Attention-LSTM, TCN-attention)."""
    return "return_attention" in inspect.signature(net.forward).parameters


def export_net(
    net: nn.Module, lookback: int, n_features: int, path: Path, with_attention: bool = True
) -> dict[str, Any]:
    """Write ``net`` as ONNX (opset :data:`OPSET`, dynamic batch) to ``path``.

    Args:
        net: the pure net ``[B, L, F] -> [B, H]``; put in eval mode here.
        lookback: ``L``.
        n_features: ``F``.
        path: the ``.onnx`` file to write.
        with_attention: also output the attention weights of nets that have them (False:
            ``y_hat`` only, as for the members of an ensemble graph).

    Returns:
        ``{"opset", "inputs", "outputs", "attention"}`` describing the graph.
    """
    net = net.eval()
    attention = with_attention and has_attention(net)
    module: nn.Module = _WithAttention(net).eval() if attention else net
    outputs = ["y_hat", "attention"] if attention else ["y_hat"]
    example = torch.zeros(2, lookback, n_features)  # batch >= 2: keeps the batch axis symbolic
    dynamic = {"x": {0: "batch"}, **{name: {0: "batch"} for name in outputs}}
    # Not under no_grad: there nn.MultiheadAttention takes its fused fast path
    # (aten::_native_multi_head_attention), which has no ONNX symbolic.
    with warnings.catch_warnings():
        # Tracer notes on shape checks / LSTM batch sizes: the B=1 and B=7 parity checks are
        # what decides whether the graph is right.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
        _onnx_export(module, example, path, outputs, dynamic)
    log.info("exported %s to %s (opset %d)", type(net).__name__, path, OPSET)
    return {"opset": OPSET, "inputs": ["x"], "outputs": outputs, "attention": attention}


def _onnx_export(
    module: nn.Module, example: Tensor, path: Path, outputs: list[str], dynamic: dict[str, Any]
) -> None:
    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["x"],
        output_names=outputs,
        dynamic_axes=dynamic,
    )


def verify_net_parity(
    net: nn.Module, onnx_path: Path, windows: np.ndarray, atol: float = NET_ATOL
) -> dict[str, Any]:
    """Compare onnxruntime with torch on real scaled windows at batch 1 and batch 7.

    Args:
        net: the trained net (eval mode).
        onnx_path: the exported graph.
        windows: ``[S, L, F]`` float32 scaled windows, ``S >= 7``.
        atol: allowed max absolute difference on every output.

    Returns:
        The parity record for the manifest: per batch size the max abs difference per output.

    Raises:
        ExportError: fewer than 7 windows, or a difference above ``atol``.
    """
    import onnxruntime as ort

    if len(windows) < max(PARITY_BATCHES):
        raise ExportError(
            f"parity needs >= {max(PARITY_BATCHES)} real windows, got {len(windows)}"
        )
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    attention = "attention" in names
    net = net.eval()
    record: dict[str, Any] = {"atol": atol, "outputs": names, "batches": {}}
    for batch in PARITY_BATCHES:
        # Different rows for each batch size, from the end of the data (the newest windows).
        x = np.ascontiguousarray(windows[-batch:], dtype=np.float32)
        with torch.no_grad():
            ref = (
                net(torch.from_numpy(x), return_attention=True)
                if attention
                else net(torch.from_numpy(x))
            )
        refs = [t.numpy() for t in ref] if isinstance(ref, tuple) else [ref.numpy()]
        got = session.run(names, {"x": x})
        diffs = {}
        for name, r, g in zip(names, refs, got, strict=True):
            if r.shape != g.shape:
                raise ExportError(
                    f"batch {batch}: ONNX {name} has shape {g.shape}, torch {r.shape}"
                )
            diffs[name] = float(np.max(np.abs(r - g)))
        record["batches"][str(batch)] = diffs
        worst = max(diffs.values())
        if not worst <= atol:
            raise ExportError(
                f"ONNX parity failed at batch {batch}: max abs difference {worst:.3g} > {atol:g} "
                f"({diffs}); the graph is not exported"
            )
    record["passed"] = True
    return record
