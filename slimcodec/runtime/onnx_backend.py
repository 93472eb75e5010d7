"""The onnx backend: each (stage, width) graph of a runtime bundle run by onnxruntime."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

from slimcodec import runtime
from slimcodec.errors import SlimError
from slimcodec.runtime.bundle import graph_prefix

INPUT = "x"


class OnnxTransforms:
    """Stages of a runtime bundle; each graph's session is created on first use.

    ``arrays``: the bundle's arrays; those named ``graph_<stage>.<width>.*`` are that
    graph's external initializers (bundle version 2; version 1 graphs embed theirs).
    """

    name = "onnx"

    def __init__(self, graphs: Mapping[tuple[str, int], bytes], arrays: Mapping[str, np.ndarray] | None = None) -> None:
        self.graphs = graphs
        self.arrays = arrays or {}
        # a session with the buffers onnxruntime reads its initializers from, for its whole life
        self._sessions: dict[tuple[str, int, int | None], tuple[object, list[np.ndarray]]] = {}
        self._lock = threading.Lock()

    def _session(self, stage: str, width: int):
        key = (stage, width, runtime.threads())
        with self._lock:
            if key not in self._sessions:
                self._sessions[key] = self._create(stage, width)
            return self._sessions[key][0]

    def _create(self, stage: str, width: int) -> tuple[object, list[np.ndarray]]:
        import onnxruntime as ort

        graph = self.graphs.get((stage, width))
        if graph is None:
            raise ValueError(f"this runtime bundle has no graph for {stage} at width {width}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = runtime.threads() or 0  # 0: one per core
        options.inter_op_num_threads = 1
        # no memory pattern: with it each run's activations come from one block planned per input
        # shape, kept in the arena beside the others; a 24 MP width-192 synthesis (64-latent tiles)
        # held 385 MiB for them, without it 222 MiB, in the same time
        options.enable_mem_pattern = False
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 4  # fatal only: a failed run is reported as one SlimError line
        prefix = graph_prefix(stage, width) + "."
        names = sorted(k for k in self.arrays if k.startswith(prefix))
        buffers = [np.ascontiguousarray(self.arrays[k]) for k in names]
        try:
            if names:
                options.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(b) for b in buffers])
            session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a damaged graph
            raise SlimError(f"runtime bundle graph {stage}-{width} does not load ({type(exc).__name__})") from exc
        return session, buffers

    def release(self, stage: str, width: int) -> None:
        """Drop the stage's session and with it the arena of its activations (made again when next
        run: 31 ms for a width-192 synthesis, 9 ms for an analysis)."""
        with self._lock:
            for key in [key for key in self._sessions if key[:2] == (stage, width)]:
                del self._sessions[key]

    def run(self, stage: str, width: int, x: np.ndarray) -> np.ndarray:
        session = self._session(stage, width)
        try:
            return session.run(None, {INPUT: np.ascontiguousarray(x, dtype=np.float32)[None]})[0][0]
        except MemoryError:
            raise
        except Exception as exc:  # a graph that loads but does not run: a damaged bundle
            raise SlimError(f"runtime bundle graph {stage}-{width} failed ({type(exc).__name__}: {exc})") from exc
