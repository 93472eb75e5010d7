"""Export a ``.pt`` weights file to a runtime bundle: one ONNX graph per (stage, width).

    python -m slimcodec.tools.export_runtime WEIGHTS.pt -o WEIGHTS.onnx.zip
    python -m slimcodec.tools.export_runtime --shipped     # every shipped .pt, bundle beside it

Needs torch and onnx (``pip install "slimcodec[train]"``). The graphs are built from
the layers each architecture describes (``stage_layers``), not traced, so they hold
exactly those operations: Conv, ConvTranspose, GDN as ``x / sqrt(conv(x², γ) + β)``,
ReLU. Weights the ``.pt`` file stores as float16 stay float16 in the graph (cast to
float32 once, when the session is created), which halves the bundle. The graphs' weights
are external initializers kept in the bundle's arrays, where a narrower width's kernels
are views of the widest one's (:mod:`slimcodec.runtime.bundle`), which halves it again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from slimcodec.runtime.bundle import BUNDLE_SUFFIX, graph_prefix, write_bundle
from slimcodec.runtime.onnx_backend import INPUT
from slimcodec.runtime.stage_layers import GDN, Conv, ConvTranspose, Layer, ReLU, _stored

OPSET = 17
# The data location of the graphs' external initializers: the runtime supplies them all; a path
# under /dev/null cannot exist, so onnxruntime never reads a stray file for one it lacks.
EXTERNAL_LOCATION = "/dev/null/slimcodec-bundle-arrays"
OUTPUT = "y"


class _Graph:
    """Nodes and (external) initializers of one graph being built."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list = []
        self.initializers: list = []
        self.arrays: dict[str, np.ndarray] = {}
        self._n = 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}{self._n}"

    def constant(self, value: np.ndarray, base: str) -> str:
        from onnx import TensorProto, helper

        stored = _stored(value)
        name = self.name(base)
        key = f"{self.prefix}.{name}"
        self.initializers.append(_external(key, stored))
        self.arrays[key] = stored
        if stored.dtype != np.float16:
            return key
        self.nodes.append(helper.make_node("Cast", [key], [name], to=TensorProto.FLOAT))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out


def _external(name: str, value: np.ndarray):
    """An initializer whose data the runtime supplies (``add_external_initializers``)."""
    from onnx import TensorProto, helper

    t = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(value.dtype), dims=value.shape)
    t.data_location = TensorProto.EXTERNAL
    for key, v in (("location", EXTERNAL_LOCATION), ("offset", "0"), ("length", str(value.nbytes))):
        t.external_data.add(key=key, value=v)
    return t


def subpixel_kernel(layer: ConvTranspose) -> tuple[np.ndarray, np.ndarray | None, int]:
    """A transposed convolution as a stride-1 convolution followed by DepthToSpace.

    Output pixel ``s·m + r`` of a transposed convolution (stride ``s``) sums input
    pixels ``m + d`` for a few offsets ``d``: one small kernel per phase ``r``. Stacking
    the phases' kernels as ``s²·out`` output channels gives an ordinary convolution,
    which runs several times faster than onnxruntime's ConvTranspose; DepthToSpace
    (CRD order) interleaves the phases back. Valid when the output is exactly ``s`` times
    the input (``k − 2p + output_padding = s``).

    Returns:
        (kernel ``[out·s², in, K, K]``, bias ``[out·s²]`` or ``None``, padding).
    """
    w = layer.weight  # [in, out, k, k]
    cin, cout, k, _ = w.shape
    s, p = layer.stride, layer.padding
    taps = {}  # phase r -> [(d, kernel index)]
    for r in range(s):
        q, b = divmod(r + p, s)
        taps[r] = [(q - j, s * j + b) for j in range(k) if s * j + b < k]
    offsets = [d for t in taps.values() for d, _ in t]
    dmin, dmax = min(offsets), max(offsets)
    size = dmax - dmin + 1
    if dmin > 0 or dmax < 0 or -dmin != dmax:
        raise ValueError("no symmetric padding for this transposed convolution")
    kernel = np.zeros((cout, s, s, cin, size, size), np.float32)
    for rh in range(s):
        for dh, kh in taps[rh]:
            for rw in range(s):
                for dw, kw in taps[rw]:
                    kernel[:, rh, rw, :, dh - dmin, dw - dmin] = w[:, :, kh, kw].T
    bias = None if layer.bias is None else np.repeat(np.asarray(layer.bias, np.float32), s * s)
    return kernel.reshape(cout * s * s, cin, size, size), bias, -dmin


def _add_layer(g: _Graph, x: str, layer: Layer) -> str:
    if (isinstance(layer, ConvTranspose)
            and layer.weight.shape[-1] - 2 * layer.padding + layer.output_padding == layer.stride):
        kernel, bias, pad = subpixel_kernel(layer)
        inputs = [x, g.constant(kernel, "w")] + ([g.constant(bias, "b")] if bias is not None else [])
        k = kernel.shape[-1]
        y = g.node("Conv", inputs, kernel_shape=[k, k], strides=[1, 1], pads=[pad] * 4)
        return g.node("DepthToSpace", [y], blocksize=layer.stride, mode="CRD")
    if isinstance(layer, (Conv, ConvTranspose)):
        k = layer.weight.shape[-1]
        inputs = [x, g.constant(layer.weight, "w")]
        if layer.bias is not None:
            inputs.append(g.constant(layer.bias, "b"))
        attrs = dict(kernel_shape=[k, k], strides=[layer.stride] * 2, pads=[layer.padding] * 4)
        if isinstance(layer, ConvTranspose):
            return g.node("ConvTranspose", inputs, output_padding=[layer.output_padding] * 2, **attrs)
        return g.node("Conv", inputs, **attrs)
    if isinstance(layer, GDN):
        c = layer.beta.shape[0]
        squared = g.node("Mul", [x, x])
        gamma = g.constant(layer.gamma.reshape(c, c, 1, 1), "gamma")
        norm = g.node("Sqrt", [g.node("Conv", [squared, gamma, g.constant(layer.beta, "beta")], kernel_shape=[1, 1])])
        return g.node("Mul" if layer.inverse else "Div", [x, norm])
    if isinstance(layer, ReLU):
        return g.node("Relu", [x])
    raise TypeError(f"no ONNX form for {type(layer).__name__}")


def stage_graph(layers: list[Layer], stage: str, width: int) -> tuple[bytes, dict[str, np.ndarray]]:
    """The serialized ONNX model computing ``layers`` on input ``x`` ``[1, C, H, W]``, and its weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    name = f"{stage}-{width}"
    g = _Graph(graph_prefix(stage, width))
    x = INPUT
    for layer in layers:
        x = _add_layer(g, x, layer)
    g.nodes.append(helper.make_node("Identity", [x], [OUTPUT]))
    convs = [layer for layer in layers if isinstance(layer, (Conv, ConvTranspose))]
    in_channels = convs[0].weight.shape[1] if isinstance(convs[0], Conv) else convs[0].weight.shape[0]
    out_channels = convs[-1].weight.shape[0] if isinstance(convs[-1], Conv) else convs[-1].weight.shape[1]
    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, int(in_channels), "height", "width"])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [1, int(out_channels), "out_height", "out_width"])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="slimcodec")
    model.ir_version = 8  # readable by onnxruntime releases of the last few years
    checked = onnx.ModelProto()  # the checker wants external data in files: check a copy holding it
    checked.CopyFrom(model)
    del checked.graph.initializer[:]
    checked.graph.initializer.extend(numpy_helper.from_array(a, k) for k, a in g.arrays.items())
    onnx.checker.check_model(checked)
    return model.SerializeToString(), g.arrays


def export_bundle(weights_path: str | Path) -> bytes:
    """The runtime bundle bytes of a ``.pt`` weights file (same id)."""
    from slimcodec.latents import codec_of
    from slimcodec.runtime.weights_bundle import to_bundle
    from slimcodec.weights import load_weights_bytes

    data = Path(weights_path).read_bytes()
    wts = load_weights_bytes(data)
    model = wts.model
    graphs, arrays = {}, {}
    for stage in codec_of(wts.architecture).GRAPH_STAGES:  # the stages the runtimes run as graphs
        for w in wts.widths:
            graphs[stage, w], weights = stage_graph(model.stage_layers(stage, w), stage, w)
            arrays.update(weights)
    bundle = to_bundle(wts, graphs)
    bundle.arrays.update(arrays)
    return write_bundle(bundle)


def main(argv: list[str] | None = None) -> int:
    from slimcodec.outputs import write_atomic
    from slimcodec.weights import SHIPPED_DIR

    p = argparse.ArgumentParser(prog="python -m slimcodec.tools.export_runtime", description=__doc__.split("\n")[0])
    p.add_argument("weights", nargs="*", type=Path, help=".pt weights files")
    p.add_argument("-o", "--output", type=Path, help="bundle path (one weights file only) [default: beside it]")
    p.add_argument("--shipped", action="store_true", help="export every shipped .pt file beside it")
    args = p.parse_args(argv)
    sources = list(args.weights) + (sorted(SHIPPED_DIR.glob("slimcae-*.pt")) if args.shipped else [])
    if not sources or (args.output and len(sources) != 1):
        p.error("give one weights file with -o, or weights files / --shipped without it")
    for src in sources:
        dst = args.output or src.with_name(src.name.removesuffix(".pt") + BUNDLE_SUFFIX)
        data = export_bundle(src)
        write_atomic(dst, lambda f: f.write(data), overwrite=True)  # noqa: B023  (called before the loop moves on)
        print(f"{src} -> {dst} ({len(data) / 2**20:.1f} MiB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
