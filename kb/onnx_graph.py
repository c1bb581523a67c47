"""Writing a network as an ONNX graph by hand and running it in onnxruntime, for the encoders kb ships
(kb/minilm_onnx.py, kb/e5_onnx.py). Nothing is exported or cached on disk: the graph is built in memory
from weights that are already on disk, and the big ones are handed to the session from memory, never
serialised into the graph."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

OPSET = 18
IR_VERSION = 8  # what onnxruntime 1.17+ reads
MS_DOMAIN = "com.microsoft"  # onnxruntime's own operators (MatMulNBits)


def available() -> bool:
    """onnxruntime and onnx are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


class Graph:
    """Collects nodes and initializers; big weights stay outside the serialised graph."""

    def __init__(self) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self.helper, self.numpy_helper, self.TensorProto = helper, numpy_helper, TensorProto
        self.nodes: list[Any] = []
        self.small: list[Any] = []  # initializers serialised into the graph
        self.external: dict[str, np.ndarray] = {}  # handed to the session, not serialised
        self._n = 0

    def op(self, op_type: str, *inputs: str, domain: str | None = None, **attrs: Any) -> str:
        self._n += 1
        out = f"{op_type.lower()}{self._n}"
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], domain=domain, **attrs))
        return out

    def const(self, value: Any, dtype: Any = np.float32) -> str:
        self._n += 1
        name = f"const{self._n}"
        self.small.append(self.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(self, name: str, value: np.ndarray) -> str:
        tensor = self.TensorProto()
        tensor.name = name
        tensor.data_type = self.helper.np_dtype_to_tensor_dtype(value.dtype)
        tensor.dims.extend(value.shape)
        tensor.data_location = self.TensorProto.EXTERNAL
        for key, val in (("location", "weights"), ("offset", "0"), ("length", str(value.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, val
        self.small.append(tensor)
        self.external[name] = value
        return name

    def gelu(self, x: str) -> str:
        """x * (1 + erf(x / sqrt 2)) / 2: BERT's exact GELU."""
        erf = self.op("Erf", self.op("Div", x, self.const(math.sqrt(2))))
        return self.op("Mul", self.op("Mul", x, self.op("Add", erf, self.const(1.0))), self.const(0.5))

    def mask_bias(self, mask: str) -> str:
        """(n, t) attention mask of 1s and 0s -> (n, 1, 1, t): 0 where attended, -1e9 on padding."""
        scaled = self.op("Mul", self.op("Sub", mask, self.const(1.0)), self.const(1e9))
        return self.op("Unsqueeze", scaled, self.const([1, 2], np.int64))

    def mean_pool(self, tokens: str, mask: str) -> str:
        """(n, t, hidden) token states -> (n, hidden), the mean over the tokens ``mask`` keeps."""
        kept = self.op("Mul", tokens, self.op("Unsqueeze", mask, self.const([2], np.int64)))
        summed = self.op("ReduceSum", kept, self.const([1], np.int64), keepdims=0)
        count = self.op("ReduceSum", mask, self.const([1], np.int64), keepdims=1)
        return self.op("Div", summed, self.op("Max", count, self.const(1e-9)))

    def finish(
        self, name: str, inputs: Sequence[tuple[str, Any, Sequence[str | int]]], output: tuple[str, int]
    ) -> bytes:
        """The serialised model: ``inputs`` as (name, numpy dtype, dims), the last node's result named
        ``output[0]`` with dims (n, ``output[1]``)."""
        self.nodes[-1].output[0] = output[0]
        h = self.helper
        graph = h.make_graph(
            self.nodes,
            name,
            [
                h.make_tensor_value_info(n, h.np_dtype_to_tensor_dtype(np.dtype(t)), dims)
                for n, t, dims in inputs
            ],
            [h.make_tensor_value_info(output[0], self.TensorProto.FLOAT, ["n", output[1]])],
            initializer=self.small,
        )
        opsets = [h.make_opsetid("", OPSET)]
        if any(node.domain == MS_DOMAIN for node in self.nodes):
            opsets.append(h.make_opsetid(MS_DOMAIN, 1))
        return h.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION).SerializeToString()


def session(graph: bytes, weights: dict[str, np.ndarray], threads: int) -> Any:
    """An onnxruntime session over ``graph`` with ``weights`` handed over from memory. ``threads``
    is the intra-op thread count: 1 for questions (a worker per core answers side by side), the core
    count to embed documents in bulk."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep
    names = list(weights)
    options.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(weights[n]) for n in names])
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
