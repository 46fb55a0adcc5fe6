"""A stacking ensemble as ONE ONNX graph: its base models' graphs plus the meta-learner.

The graph keeps the bundle's contract, so the Predictor, registry, serving, paper trading and
monitoring use it like any other model: input ``x [B, L, F]`` float64 *unscaled* features,
output ``y_hat [B, H]`` float64 (log returns, or ``p_up`` for classifiers). A second output,
``members [B, H, M]``, holds each base model's forecast in the same units (for parity checks and
inspection). Inside, per member ``m`` (its graph renamed with the prefix ``m<i>_``):

- torch net: ``(x - center) / scale`` with the member's own train-only scaler in float64 (as
  ``Scaler.transform``), Cast to float32, the net, Sigmoid for classifiers (as
  ``LitForecaster.predict_step``), Cast to float64, times ``target_scale`` for regression (as
  ``ForecastDataModule.unscale_predictions``);
- LightGBM: its graph (:func:`~cryptoforecast.export.lightgbm_onnx.lightgbm_to_onnx`) on ``x``
  as it is, Cast to float64;

then ``y_hat = link(sum_m members[..., m] * weight[h, m] / scale[h, m] + intercept[h])`` with the
meta-learner's numbers from ``ensemble.json`` (see ``models/ensemble.py``) as initializers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cryptoforecast.export.onnx import PARITY_BATCHES, ExportError

log = logging.getLogger(__name__)

LINKS = ("identity", "logistic")
#: The combined graph against the meta-learner applied (in numpy) to the graph's own member
#: outputs: the same float64 arithmetic, so only rounding may differ.
META_ATOL = 1e-12


@dataclass(frozen=True)
class MetaLearner:
    """What ``ensemble.json`` records: weights and scale ``[H, M]``, intercept ``[H]``, link."""

    base_models: list[str]
    weights: np.ndarray
    scale: np.ndarray
    intercept: np.ndarray
    link: str

    @classmethod
    def from_json(cls, path: Path, n_outputs: int) -> MetaLearner:
        """Read and check ``ensemble.json``.

        Raises:
            ExportError: missing file or key (runs trained before the export existed lack
                ``scale``/``intercept``/``link``: retrain them), or inconsistent shapes.
        """
        if not path.is_file():
            raise ExportError(f"{path}: missing (not an ensemble run folder?)")
        doc = json.loads(path.read_text())
        missing = [
            k for k in ("base_models", "weights", "scale", "intercept", "link") if k not in doc
        ]
        if missing:
            raise ExportError(
                f"{path}: no {', '.join(missing)} (written by an older version that did not "
                "record the whole meta-learner); retrain the ensemble to export it"
            )
        names = [str(n) for n in doc["base_models"]]
        weights = np.asarray(doc["weights"], dtype=np.float64)
        scale = np.asarray(doc["scale"], dtype=np.float64)
        intercept = np.asarray(doc["intercept"], dtype=np.float64)
        shape = (n_outputs, len(names))
        if weights.shape != shape or scale.shape != shape or intercept.shape != (n_outputs,):
            raise ExportError(
                f"{path}: weights {weights.shape}, scale {scale.shape} and intercept "
                f"{intercept.shape} do not fit {n_outputs} horizon(s) x {len(names)} base models"
            )
        if not (scale > 0).all() or not np.isfinite([*weights.ravel(), *intercept]).all():
            raise ExportError(f"{path}: scale must be positive and weights finite")
        if doc["link"] not in LINKS or len(set(names)) != len(names):
            raise ExportError(f"{path}: link {doc['link']!r} / base models {names} not supported")
        return cls(names, weights, scale, intercept, str(doc["link"]))

    def combine(self, members: np.ndarray) -> np.ndarray:
        """Meta forecast ``[S, H]`` from member forecasts ``[S, H, M]`` (what the graph does)."""
        z = (members / self.scale * self.weights).sum(axis=-1) + self.intercept
        return 1.0 / (1.0 + np.exp(-z)) if self.link == "logistic" else z

    def describe(self) -> dict[str, Any]:
        """JSON for ``feature_spec.json``'s model section."""
        return {
            "base_models": self.base_models,
            "weights": self.weights.tolist(),
            "scale": self.scale.tolist(),
            "intercept": self.intercept.tolist(),
            "link": self.link,
        }


@dataclass(frozen=True)
class Member:
    """One base model's graph ``x [B, L, F] -> y_hat [B, H]`` and how to feed and decode it.

    ``center``/``scale``: the scaler applied before the graph (torch nets; the graph then takes
    float32), or None (LightGBM: unscaled float64). ``sigmoid``: logits -> p_up.
    ``target_scale``: scaled returns -> returns (regression nets), or None.
    """

    name: str
    graph: onnx.ModelProto
    center: np.ndarray | None
    scale: np.ndarray | None
    sigmoid: bool
    target_scale: np.ndarray | None


def _const(name: str, values: Any, dtype: int = TensorProto.DOUBLE) -> TensorProto:
    kind = np.float64 if dtype == TensorProto.DOUBLE else np.int64
    return numpy_helper.from_array(np.asarray(values, dtype=kind), name)


def _member_nodes(
    i: int, member: Member
) -> tuple[list[onnx.NodeProto], list[TensorProto], list[onnx.ValueInfoProto], str]:
    """Nodes feeding ``x`` into member ``i`` and decoding its output to ``[B, H, 1]`` float64."""
    p = f"m{i}_"
    graph = onnx.compose.add_prefix(member.graph, p).graph
    if [o.name for o in graph.input] != [f"{p}x"] or graph.output[0].name != f"{p}y_hat":
        raise ExportError(f"ensemble member {member.name}: graph is not x -> y_hat")
    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = list(graph.initializer)
    if member.center is not None and member.scale is not None:
        inits += [_const(f"{p}center", member.center), _const(f"{p}scale", member.scale)]
        nodes += [
            helper.make_node("Sub", ["x", f"{p}center"], [f"{p}centered"], name=f"{p}sub"),
            helper.make_node("Div", [f"{p}centered", f"{p}scale"], [f"{p}x64"], name=f"{p}div"),
            helper.make_node("Cast", [f"{p}x64"], [f"{p}x"], to=TensorProto.FLOAT, name=f"{p}in"),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["x"], [f"{p}x"], name=f"{p}in"))
    nodes += list(graph.node)
    out = f"{p}y_hat"
    if member.sigmoid:
        nodes.append(helper.make_node("Sigmoid", [out], [f"{p}p_up"], name=f"{p}sigmoid"))
        out = f"{p}p_up"
    nodes.append(
        helper.make_node("Cast", [out], [f"{p}y64"], to=TensorProto.DOUBLE, name=f"{p}out")
    )
    out = f"{p}y64"
    if member.target_scale is not None:
        inits.append(_const(f"{p}target_scale", member.target_scale))
        nodes.append(
            helper.make_node("Mul", [out, f"{p}target_scale"], [f"{p}ret"], name=f"{p}mul")
        )
        out = f"{p}ret"
    nodes.append(helper.make_node("Unsqueeze", [out, "axis2"], [f"{p}col"], name=f"{p}col"))
    return nodes, inits, list(graph.value_info), f"{p}col"


def ensemble_to_onnx(
    members: list[Member], meta: MetaLearner, lookback: int, n_features: int
) -> onnx.ModelProto:
    """One graph ``x [B, L, F] float64 -> y_hat [B, H], members [B, H, M]`` (float64).

    Raises:
        ExportError: members and meta-learner disagree, or a member graph has another interface.
    """
    if [m.name for m in members] != meta.base_models:
        raise ExportError(f"members {[m.name for m in members]} != {meta.base_models}")
    n_out = meta.weights.shape[0]
    nodes: list[onnx.NodeProto] = []
    inits = [
        _const("axis2", [2], TensorProto.INT64),
        _const("meta_scale", meta.scale),
        _const("meta_weight", meta.weights),
        _const("meta_intercept", meta.intercept),
    ]
    value_info: list[onnx.ValueInfoProto] = []
    columns: list[str] = []
    opsets: dict[str, int] = {}
    ir_version = 8
    for i, member in enumerate(members):
        if member.graph.functions:
            raise ExportError(f"ensemble member {member.name}: graphs with functions unsupported")
        part_nodes, part_inits, part_info, column = _member_nodes(i, member)
        nodes += part_nodes
        inits += part_inits
        value_info += part_info
        columns.append(column)
        for op in member.graph.opset_import:
            opsets[op.domain] = max(opsets.get(op.domain, 1), op.version)
        ir_version = max(ir_version, member.graph.ir_version)
    link_op = "Sigmoid" if meta.link == "logistic" else "Identity"
    nodes += [
        helper.make_node("Concat", columns, ["members"], axis=2, name="members"),
        helper.make_node("Div", ["members", "meta_scale"], ["meta_z"], name="meta_div"),
        helper.make_node("Mul", ["meta_z", "meta_weight"], ["meta_terms"], name="meta_mul"),
        helper.make_node(
            "ReduceSum", ["meta_terms", "axis2"], ["meta_sum"], keepdims=0, name="meta_sum"
        ),
        helper.make_node("Add", ["meta_sum", "meta_intercept"], ["meta_logit"], name="meta_add"),
        helper.make_node(link_op, ["meta_logit"], ["y_hat"], name="meta_link"),
    ]
    graph = helper.make_graph(
        nodes,
        "stacking_ensemble",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["batch", lookback, n_features])],
        [
            helper.make_tensor_value_info("y_hat", TensorProto.DOUBLE, ["batch", n_out]),
            helper.make_tensor_value_info(
                "members", TensorProto.DOUBLE, ["batch", n_out, len(members)]
            ),
        ],
        initializer=inits,
        value_info=value_info,
    )
    opsets[""] = max(opsets.get("", 13), 13)  # Unsqueeze / ReduceSum take axes as inputs
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
        producer_name="cryptoforecast",
    )
    proto.ir_version = ir_version
    onnx.checker.check_model(proto)
    return proto


def verify_meta_parity(
    session: Any, meta: MetaLearner, windows: np.ndarray, atol: float = META_ATOL
) -> dict[str, Any]:
    """The graph's ``y_hat`` equals :meth:`MetaLearner.combine` of its own ``members`` output.

    Batches 1 and 7 of the newest unscaled windows ``[S, L, F]``.

    Raises:
        ExportError: fewer than 7 windows, or a difference above ``atol``.
    """
    if len(windows) < max(PARITY_BATCHES):
        raise ExportError(
            f"parity needs >= {max(PARITY_BATCHES)} real windows, got {len(windows)}"
        )
    record: dict[str, Any] = {"atol": atol, "batches": {}}
    for batch in PARITY_BATCHES:
        y_hat, members = session.run(["y_hat", "members"], {"x": windows[-batch:]})
        diff = float(np.max(np.abs(y_hat - meta.combine(members))))
        record["batches"][str(batch)] = diff
        if not diff <= atol:
            raise ExportError(
                f"ensemble meta-learner parity failed at batch {batch}: max abs difference "
                f"{diff:.3g} > {atol:g}; not exported"
            )
    return record
