"""LightGBM boosters -> one ONNX graph with the bundle's contract, via onnxmltools.

Every horizon's booster is converted with ``onnxmltools.convert_lightgbm`` (never hummingbird-ml,
which pins an old onnx) and the graphs are joined into one whose interface matches the nets': input
``x [B, L, F]`` (unscaled features, float64; the split thresholds are rewritten to LightGBM's own
doubles by :func:`_double_thresholds`, so every split goes the way LightGBM's does) and output
``y_hat [B, H]`` (float32 log returns, or ``p_up`` for a binary objective). Inside,
``inputs=features`` takes the last step ``x[:, L-1, :]`` and ``inputs=window`` flattens
``[B, L, F] -> [B, L*F]`` in the same time-major order as ``LightGBMForecaster.design_matrix``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from cryptoforecast.export.onnx import PARITY_BATCHES, ExportError
from cryptoforecast.models.lightgbm_forecaster import LightGBMForecaster

log = logging.getLogger(__name__)

#: onnxmltools 1.16 converts LightGBM up to this default-domain opset.
LGBM_OPSET = 15
#: Parity of trees: max |onnx - lightgbm| <= TREE_ATOL + TREE_RTOL * max|lightgbm| per batch (the
#: graph accumulates leaf values in float32, LightGBM in float64; leaves that nearly cancel leave
#: an absolute float32 rounding error, so a near-constant model needs the absolute floor).
TREE_RTOL = 1e-6
TREE_ATOL = 1e-9


def lightgbm_to_onnx(model: LightGBMForecaster, n_features: int) -> onnx.ModelProto:
    """One graph ``x [B, L, F] (float64) -> y_hat [B, H] (float32)`` for all horizons.

    Args:
        model: a fitted (or loaded) forecaster.
        n_features: ``F`` (``len(model.feature_names)``).

    Raises:
        ExportError: the forecaster has no boosters.
    """
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import DoubleTensorType, FloatTensorType

    if not model.boosters:
        raise ExportError("the LightGBM model has no boosters (not fitted)")
    lookback = model.lookback
    n_in = n_features if model.inputs == "features" else lookback * n_features
    binary = model.objective == "binary"
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    ml_version = 1
    if model.inputs == "features":
        inits.append(helper.make_tensor("last_step", TensorProto.INT64, [], [lookback - 1]))
        nodes.append(helper.make_node("Gather", ["x", "last_step"], ["flat"], axis=1))
    else:
        inits.append(helper.make_tensor("flat_shape", TensorProto.INT64, [2], [-1, n_in]))
        nodes.append(helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]))
    columns = []
    for h, booster in zip(model.horizons, model.boosters, strict=True):
        part = convert_lightgbm(
            booster,
            # onnxmltools' classifier takes float input only; _double_thresholds switches to
            # float64 input and thresholds afterwards
            initial_types=[
                ("input", (FloatTensorType if binary else DoubleTensorType)([None, n_in]))
            ],
            target_opset=LGBM_OPSET,
            zipmap=False,
        )
        _double_thresholds(part, booster)
        part = onnx.compose.add_prefix(part, f"h{h}_")
        ml_version = max(
            [ml_version] + [o.version for o in part.opset_import if o.domain == "ai.onnx.ml"]
        )
        nodes.append(helper.make_node("Identity", ["flat"], [f"h{h}_input"]))
        nodes.extend(part.graph.node)
        inits.extend(part.graph.initializer)
        out = part.graph.output[-1].name if binary else part.graph.output[0].name
        col = f"h{h}_col"
        if binary:  # probabilities [B, 2] -> p_up [B, 1]
            inits += [
                helper.make_tensor(f"h{h}_s0", TensorProto.INT64, [1], [1]),
                helper.make_tensor(f"h{h}_s1", TensorProto.INT64, [1], [2]),
                helper.make_tensor(f"h{h}_ax", TensorProto.INT64, [1], [1]),
            ]
            nodes.append(
                helper.make_node("Slice", [out, f"h{h}_s0", f"h{h}_s1", f"h{h}_ax"], [col])
            )
        else:
            nodes.append(helper.make_node("Identity", [out], [col]))
        columns.append(col)
    nodes.append(helper.make_node("Concat", columns, ["y_cat"], axis=1))
    nodes.append(helper.make_node("Cast", ["y_cat"], ["y_hat"], to=TensorProto.FLOAT))
    graph = helper.make_graph(
        nodes,
        "lightgbm_forecaster",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["batch", lookback, n_features])],
        [helper.make_tensor_value_info("y_hat", TensorProto.FLOAT, ["batch", len(columns)])],
        initializer=inits,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", LGBM_OPSET),
            helper.make_opsetid("ai.onnx.ml", ml_version),
        ],
        producer_name="cryptoforecast",
    )
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto


def _double_thresholds(part: onnx.ModelProto, booster: Any) -> None:
    """Give the tree ensemble LightGBM's float64 split thresholds (``ai.onnx.ml`` opset 3).

    onnxmltools writes thresholds as float32 attributes; a feature lying between a threshold and
    its float32 rounding then takes the other branch (seen on real data: 1e-4 errors in log
    returns). Each ONNX split node is matched to the booster's node at the same place in the same
    tree (a walk of both trees from the root: the ONNX "true" branch is LightGBM's left child),
    checked against the float32 value, and given the booster's own double threshold in
    ``nodes_values_as_tensor``; the input becomes float64 too. Matching by value alone is
    ambiguous when two thresholds of one feature in one tree round to the same float32.
    """
    trees = {
        int(info["tree_index"]): info["tree_structure"]
        for info in booster.dump_model()["tree_info"]
    }
    for node in part.graph.node:
        if not node.op_type.startswith("TreeEnsemble"):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        keys = list(zip(attrs["nodes_treeids"], attrs["nodes_nodeids"], strict=True))
        position = {(int(t), int(n)): i for i, (t, n) in enumerate(keys)}
        values: list[float | None] = [None] * len(keys)
        for tree, root in trees.items():
            _match_tree(attrs, position, tree, root, values)
        missing = [i for i, v in enumerate(values) if v is None]
        if missing:
            i = missing[0]
            raise ExportError(
                f"cannot map the ONNX split (tree {keys[i][0]}, node {keys[i][1]}) back to a "
                "LightGBM threshold: the converted tree's shape differs from the booster's"
            )
        kept = [a for a in node.attribute if a.name != "nodes_values"]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.append(
            helper.make_attribute(
                "nodes_values_as_tensor",
                helper.make_tensor(
                    "nodes_values",
                    TensorProto.DOUBLE,
                    [len(values)],
                    [v for v in values if v is not None],  # none is missing (checked above)
                ),
            )
        )
    for opset in part.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = max(opset.version, 3)
    part.graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE


def _match_tree(
    attrs: dict[str, Any],
    position: dict[tuple[int, int], int],
    tree: int,
    root: dict[str, Any],
    values: list[float | None],
) -> None:
    """Walk one LightGBM tree and its ONNX copy together, filling ``values`` per ONNX node."""
    children = set(attrs["nodes_truenodeids"]) | set(attrs["nodes_falsenodeids"])
    roots = [
        n
        for t, n, mode in zip(
            attrs["nodes_treeids"], attrs["nodes_nodeids"], attrs["nodes_modes"], strict=True
        )
        if int(t) == tree and (int(n) not in children or int(n) == 0)
    ]
    stack = [(root, int(min(roots)))] if roots else []
    while stack:
        lgb, onnx_id = stack.pop()
        i = position[(tree, onnx_id)]
        if "split_feature" not in lgb:  # a leaf on both sides
            if attrs["nodes_modes"][i] != b"LEAF":
                raise ExportError(f"tree {tree}: ONNX node {onnx_id} splits, LightGBM's is a leaf")
            values[i] = 0.0
            continue
        thr, feat = float(lgb["threshold"]), int(lgb["split_feature"])
        if (
            attrs["nodes_modes"][i] == b"LEAF"
            or int(attrs["nodes_featureids"][i]) != feat
            or float(np.float32(thr)) != float(np.float32(attrs["nodes_values"][i]))
        ):
            raise ExportError(
                f"tree {tree}: ONNX node {onnx_id} does not match LightGBM's split "
                f"(feature {feat} <= {thr})"
            )
        values[i] = thr
        stack.append((lgb["left_child"], int(attrs["nodes_truenodeids"][i])))
        stack.append((lgb["right_child"], int(attrs["nodes_falsenodeids"][i])))


def export_lightgbm(model: LightGBMForecaster, n_features: int, path: Path) -> dict[str, Any]:
    """Write :func:`lightgbm_to_onnx` to ``path``; returns the graph description."""
    onnx.save(lightgbm_to_onnx(model, n_features), str(path))
    log.info("exported %d LightGBM booster(s) to %s", len(model.boosters), path)
    return {
        "opset": LGBM_OPSET,
        "inputs": ["x"],
        "outputs": ["y_hat"],
        "attention": False,
        "lightgbm_inputs": model.inputs,
    }


def lightgbm_reference(model: LightGBMForecaster, windows: np.ndarray) -> np.ndarray:
    """What LightGBM itself predicts for unscaled windows ``[S, L, F]`` -> ``[S, H]``."""
    x = windows[:, -1, :] if model.inputs == "features" else windows.reshape(len(windows), -1)
    out = np.empty((len(windows), len(model.boosters)))
    for j, (booster, best) in enumerate(zip(model.boosters, model.best_iterations, strict=True)):
        out[:, j] = booster.predict(x, num_iteration=best)
    return out


def verify_lightgbm_parity(
    model: LightGBMForecaster, onnx_path: Path, windows: np.ndarray, rtol: float = TREE_RTOL
) -> dict[str, Any]:
    """Compare onnxruntime with LightGBM on real unscaled windows at batch 1 and 7.

    Raises:
        ExportError: fewer than 7 windows or a difference above the tolerance.
    """
    import onnxruntime as ort

    if len(windows) < max(PARITY_BATCHES):
        raise ExportError(
            f"parity needs >= {max(PARITY_BATCHES)} real windows, got {len(windows)}"
        )
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    record: dict[str, Any] = {
        "rtol": rtol,
        "atol": TREE_ATOL,
        "outputs": ["y_hat"],
        "batches": {},
    }
    for batch in PARITY_BATCHES:
        x = np.ascontiguousarray(windows[-batch:], dtype=np.float64)
        ref = lightgbm_reference(model, x)
        (got,) = session.run(["y_hat"], {"x": x})
        if got.shape != ref.shape:
            raise ExportError(
                f"batch {batch}: ONNX y_hat has shape {got.shape}, LightGBM {ref.shape}"
            )
        diff = float(np.max(np.abs(got - ref)))
        scale = max(float(np.max(np.abs(ref))), 1e-12)
        record["batches"][str(batch)] = {"y_hat": diff, "relative": diff / scale}
        if not diff <= TREE_ATOL + rtol * scale:
            raise ExportError(
                f"ONNX parity failed at batch {batch}: max abs difference {diff:.3g} is "
                f"{diff / scale:.3g} of the largest output (limit {TREE_ATOL:g} + {rtol:g} "
                "of it); not exported"
            )
    record["passed"] = True
    return record
