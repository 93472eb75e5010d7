"""Files per second of `slim encode DIR --scheduler` on a local two-worker Dask cluster
against `slim encode DIR -j 2` on the same folder, and whether their outputs are identical.

Builds a folder of COUNT images (Kodak's, repeated under new names; gradients where
../shared/data/kodak is absent), then times each command as a whole process (imports,
weights, files included), alternating them round by round. The cluster (two worker
processes, one thread each, on 127.0.0.1) is started once before the rounds; its
workers load the weights in each run (the plugin), as `-j 2`'s workers do. Both run
the transforms on one thread per worker. Needs the dask extra.

    .venv/bin/python benchmarks/cluster_speed.py --count 200        # the issue's folder
    taskset -c 1 .venv/bin/python benchmarks/cluster_speed.py --count 24 --rounds 1 -w 48

The machine's load moves both alike; say how busy it was when quoting the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def make_folder(folder: Path, count: int) -> str:
    """``count`` PNGs in ``folder`` (in two sub-folders); returns what they are."""
    sources = sorted(KODAK.glob("kodim*.png"))
    for i in range(count):
        dst = folder / f"part{i % 2}" / f"img{i:04d}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if sources:
            shutil.copyfile(sources[i % len(sources)], dst)
        else:
            sys.path.insert(0, str(ROOT / "tests"))
            from conftest import gradient_image

            gradient_image(768, 512).save(dst)
    return f"{count} Kodak images (768×512)" if sources else f"{count} gradients (768×512)"


def timed(cmd: list[str]) -> float:
    """Wall seconds of ``cmd`` as its own process (fails loudly on a non-zero exit)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def same_outputs(a: Path, b: Path) -> bool:
    """Whether two output trees hold the same files with the same bytes."""
    names = sorted(p.relative_to(a) for p in a.rglob("*.slim"))
    return names == sorted(p.relative_to(b) for p in b.rglob("*.slim")) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="images in the folder [default: 200]")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each [default: 3]")
    parser.add_argument("-w", "--width", type=int, default=144, help="network width [default: 144]")
    parser.add_argument("--serial", action="store_true",
                        help="also time -j 1 and compare both outputs with its own")
    args = parser.parse_args(argv)

    from distributed import LocalCluster

    slim = str(Path(sys.executable).with_name("slim"))
    with tempfile.TemporaryDirectory(prefix="cluster-speed-") as tmp, \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None) as cluster:
        folder = Path(tmp, "in")
        what = make_folder(folder, args.count)
        common = ["-w", str(args.width), "--threads", "1", "-q", "--force"]
        commands = {"-j 2": ["-j", "2"], "--scheduler (2 workers)": ["--scheduler", cluster.scheduler_address]}
        if args.serial:
            commands["-j 1"] = ["-j", "1"]
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, extra in commands.items():
                out = Path(tmp, name.split(" (")[0].strip("-").replace(" ", ""))
                times[name].append(timed([slim, "encode", str(folder), "-o", str(out), *common, *extra]))
        identical = same_outputs(Path(tmp, "j2"), Path(tmp, "scheduler"))
        if args.serial:
            identical = identical and same_outputs(Path(tmp, "j1"), Path(tmp, "scheduler"))
        cpus = sorted(os.sched_getaffinity(0))

    print(f"{what}, width {args.width}, {args.rounds} round(s), CPUs {cpus}, "
          f"outputs byte-identical{' (with -j 1 too)' if args.serial else ''}: {'yes' if identical else 'NO'}")
    print("| command | median s | files/s |\n|---|---:|---:|")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"| slim encode DIR {name} | {median:.1f} | {args.count / median:.2f} |")
    ratio = statistics.median(times["-j 2"]) / statistics.median(times["--scheduler (2 workers)"])
    print(f"cluster / -j 2 speed: {ratio:.2f}×")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
