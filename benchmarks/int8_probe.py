"""What int8 arithmetic would buy the synthesis: onnxruntime static quantization, speed and PSNR.

    python benchmarks/int8_probe.py --width 192 --images 24 --threads 1

Takes the shipped bundle's synthesis graph at one width, makes it a self-contained float32
model (the bundle's float16 weights cast once), and quantizes it with onnxruntime's static
quantization (QDQ, int8 weights per channel, uint8 activations) calibrated on the latents of
eval2 images (never Kodak). Then, on Kodak images encoded at that width, it runs both graphs
on the same latents (the whole image in one run, one session each) and prints the median time
of each and the PSNR of each decoded image against the original, per image and on average.
A measurement for issue 32, not a codec path: the default decoder is unchanged.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def float_model(wts, width: int):
    """The synthesis graph at ``width`` with its weights inside, as float32 initializers."""
    import onnx
    from onnx import numpy_helper

    from slimcodec.runtime.bundle import graph_prefix

    model = onnx.load_from_string(wts.transforms.graphs[("synthesis", width)])
    arrays = wts.transforms.arrays
    prefix = graph_prefix("synthesis", width) + "."
    stored = {init.name: np.asarray(arrays[init.name]) for init in model.graph.initializer
              if init.name.startswith(prefix)}
    del model.graph.initializer[:]
    casts = {n.input[0]: n for n in model.graph.node if n.op_type == "Cast" and n.input[0] in stored}
    for name, value in stored.items():
        if name in casts:  # fold the cast: the float32 weight under the cast's output name
            model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), casts[name].output[0]))
        else:
            model.graph.initializer.append(numpy_helper.from_array(value, name))
    kept = [n for n in model.graph.node if n not in casts.values()]
    for i, node in enumerate(kept):  # quantization excludes nodes by name
        node.name = node.name or f"{node.op_type.lower()}_{i}"
    del model.graph.node[:]
    model.graph.node.extend(kept)
    onnx.checker.check_model(model)
    return model


def latents(wts, path: Path, width: int) -> np.ndarray:
    from slimcodec import codec

    with Image.open(path) as im:
        data = codec.encode(im.convert("RGB"), width, weights=wts)
    return codec.decode_latents(data, weights=wts)[1].y_hat


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--images", type=int, default=24, help="first N Kodak images")
    p.add_argument("--calibration", type=int, default=6, help="eval2 images for calibration")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=3, help="timed runs per graph and image")
    p.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax",
                   help="how activation ranges are calibrated")
    p.add_argument("--float-gdn", action="store_true", help="keep the inverse GDNs (1x1 convolutions) in float")
    a = p.parse_args(argv)

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from slimcodec.weights import load_weights

    wts = load_weights()
    # crops of one size: the histogram calibrations stack them
    calib = [np.ascontiguousarray(latents(wts, path, a.width)[None, :, :32, :32])
             for path in sorted((DATA / "eval2").glob("*.png"))[: a.calibration]]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calib)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {"x": item}

    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        model = float_model(wts, a.width)
        onnx.save(model, fp32)
        shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
        gdn = [n.name for n in model.graph.node
               if n.op_type == "Conv" and shapes.get(n.input[1], (0, 0, 0, 0))[2:] == (1, 1)]
        method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                  "entropy": CalibrationMethod.Entropy}[a.method]
        quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                        nodes_to_exclude=gdn if a.float_gdn else [])
        options = ort.SessionOptions()
        options.intra_op_num_threads = a.threads
        sessions = {name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                    for name, path in (("fp32", fp32), ("int8", int8))}
        rows = []
        for path in sorted((DATA / "kodak").glob("*.png"))[: a.images]:
            with Image.open(path) as im:
                original = np.asarray(im.convert("RGB"))
            y_hat = latents(wts, path, a.width)[None]
            row = {"image": path.stem}
            for name, session in sessions.items():
                session.run(None, {"x": y_hat})  # warm-up
                times = []
                for _ in range(a.runs):
                    start = time.perf_counter()
                    out = session.run(None, {"x": y_hat})[0][0]
                    times.append(time.perf_counter() - start)
                h, w = original.shape[:2]
                rgb = np.clip(np.rint(out[:, :h, :w] * 255), 0, 255).transpose(1, 2, 0)
                row[name] = (statistics.median(times), psnr(rgb, original))
            rows.append(row)
            print(f"{row['image']}: fp32 {row['fp32'][0]:.3f} s {row['fp32'][1]:.2f} dB | "
                  f"int8 {row['int8'][0]:.3f} s {row['int8'][1]:.2f} dB", flush=True)
    fp32_t = statistics.median(r["fp32"][0] for r in rows)
    int8_t = statistics.median(r["int8"][0] for r in rows)
    loss = [r["fp32"][1] - r["int8"][1] for r in rows]
    print(f"width {a.width}, {len(rows)} Kodak images, {a.threads} thread(s), {a.method}"
          f"{', GDNs in float' if a.float_gdn else ''}: synthesis median fp32 {fp32_t:.3f} s, "
          f"int8 {int8_t:.3f} s ({fp32_t / int8_t:.2f}x); PSNR fp32 {np.mean([r['fp32'][1] for r in rows]):.3f} dB, "
          f"int8 {np.mean([r['int8'][1] for r in rows]):.3f} dB (loss mean {np.mean(loss):.3f}, "
          f"worst {max(loss):.3f} dB)")


if __name__ == "__main__":
    main()
