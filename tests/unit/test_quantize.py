"""The int8 rewrites (vectors.engine.quantize) on small graphs: exact zero points, per-row ranges, int8 weights."""

from __future__ import annotations

import numpy as np
import pytest

from vectors.engine.quantize import WEIGHT_MAX, compress_weights, quantize_model, quantize_weight

K, N = 48, 24


def weights(kind: str, rng: np.random.Generator) -> np.ndarray:
    w = rng.normal(0, 0.05, (K, N)).astype(np.float32)
    if kind == "positive":  # every column sums far from zero: several zero-point rows
        w = np.abs(w)
    if kind == "empty-column":
        w[:, 3] = 0.0
    return w


@pytest.mark.parametrize("kind", ["normal", "positive", "empty-column"])
def test_zero_point_rows_make_the_integer_product_exact(kind):
    rng = np.random.default_rng(1)
    w = weights(kind, rng)
    w_q, scale = quantize_weight(w)
    extra = w_q.shape[0] - K
    assert w_q.dtype == np.int8 and np.abs(w_q.astype(np.int32)).max() <= WEIGHT_MAX
    assert extra >= (4 if kind == "positive" else 1)
    assert np.allclose(w_q[:K] * scale, w, atol=scale.max() / 2 + 1e-7)
    q = rng.integers(0, 256, (5, K))
    z = rng.integers(0, 256, (5, 1))
    augmented = np.concatenate([q, np.repeat(z, extra, axis=1)], axis=1) @ w_q.astype(np.int64)
    assert (augmented == (q - z) @ w_q[:K].astype(np.int64)).all()


def matmul_model(w: np.ndarray, bias: np.ndarray, opset: int) -> object:
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", N])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [17, 18])
def test_rewritten_matmul_keeps_each_row_within_its_own_range(opset):
    import onnxruntime as ort

    rng = np.random.default_rng(2)
    w = weights("positive", rng)
    bias = rng.normal(0, 0.1, N).astype(np.float32)
    model = matmul_model(w, bias, opset)
    assert quantize_model(model) == 1
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.normal(0, 1, (2, 6, K)).astype(np.float32)
    x[0, 1] = np.abs(x[0, 1]) + 3.0  # no negative value: zero point 0
    x[0, 2] = -np.abs(x[0, 2])  # no positive value: zero point 255
    x[0, 3] *= 1000.0  # an outlier row must not coarsen the others
    x[1, 0] = 0.0
    x[1, 1] = 0.01 * x[1, 1] - 0.2  # a narrow range well away from zero
    got = session.run(None, {"x": x})[0]
    want = x @ w + bias
    assert got.shape == want.shape
    error = np.abs(got - want).max(axis=-1)
    size = (np.abs(x) @ np.abs(w)).max(axis=-1)  # a dot product's rounding error grows with this
    assert (error <= 0.01 * size).all(), error / size
    assert error[1, 0] <= 1e-6  # a zero row is exact: 0 is one of its levels
    alone = session.run(None, {"x": x[:1, 2:3]})[0]
    assert np.array_equal(alone[0, 0], got[0, 2])  # a row's result does not depend on its neighbours


def test_compressed_weights_dequantize_within_half_a_step_of_each_column(tmp_path):
    import onnx
    import openvino as ov
    from onnx import numpy_helper

    rng = np.random.default_rng(3)
    w = weights("empty-column", rng)
    w[:, 5] *= 100.0  # a wide column must not coarsen the others
    bias = rng.normal(0, 0.1, N).astype(np.float32)
    model = matmul_model(w, bias, 17)
    assert compress_weights(model) == 1
    stored = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    w_q, scale = stored["w_w8"], stored["w_s"]
    assert "w" not in stored and w_q.dtype == np.int8 and np.abs(w_q.astype(np.int32)).max() <= 127
    assert scale.shape == (N,) and scale[5] > 50 * np.delete(scale, [3, 5]).max()
    assert (np.abs(w_q * scale - w) <= scale / 2 + 1e-7).all()  # each column within half its own step
    assert (w_q[:, 3] == 0).all()  # an all-zero column stays exactly zero
    assert [node.op_type for node in model.graph.node] == ["DequantizeLinear", "MatMul", "Add"]
    path = tmp_path / "w8.onnx"
    onnx.save(model, str(path))
    x = rng.normal(0, 1, (2, 6, K)).astype(np.float32)
    compiled = ov.Core().compile_model(str(path), "CPU", {"DYNAMIC_QUANTIZATION_GROUP_SIZE": 16})
    got = compiled(x)[0]
    want = x @ w + bias
    error = np.abs(got - want).max(axis=-1)
    size = (np.abs(x) @ np.abs(w)).max(axis=-1)
    assert (error <= 0.02 * size).all(), error / size


def test_a_graph_without_constant_matmul_weights_is_left_alone():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "y"], ["z"])],
        "g",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [K, K]) for name in "xy"],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [K, K])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert quantize_model(model) == 0
    assert compress_weights(model) == 0
    assert [node.op_type for node in model.graph.node] == ["MatMul"]
    assert all(o.domain != "com.microsoft" for o in model.opset_import)
