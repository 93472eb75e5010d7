"""Pin this release's bitstream: encode samples/kodim23-crop.png at width 96 with the default weights
into tests/released/ (the .slim, its decoded .png, and the symbols' digests in expected.json).

    python scripts/add_released_file.py COMMIT    # COMMIT: the commit whose code made the file

Run it once per release, after the new default weights are in place; tests/test_released_files.py
then checks every later version decodes the file to the same symbols and pixels.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from slimcodec import __version__, codec
from slimcodec.weights import DEFAULT_WEIGHTS_ID

ROOT = Path(__file__).resolve().parents[1]


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def main(made_by: str) -> None:
    folder = ROOT / "tests" / "released"
    name = f"{__version__}-{DEFAULT_WEIGHTS_ID}-w96"
    with Image.open(ROOT / "samples" / "kodim23-crop.png") as im:
        data = codec.encode(im, 96)
    (folder / f"{name}.slim").write_bytes(data)
    codec.decode(data).save(folder / f"{name}.png")
    _, latents, _ = codec.decode_latents(data)
    expected = json.loads((folder / "expected.json").read_text())
    expected[name] = {"made_by": made_by, "weights": DEFAULT_WEIGHTS_ID,
                      **{k: digest(latents[k]) for k in ("y", "z", "indexes") if k in latents}}
    lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in expected.items()]
    (folder / "expected.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(name, expected[name])


if __name__ == "__main__":
    main(sys.argv[1])
