"""``slim encode/decode --scheduler``: batch conversion on a local Dask cluster of two workers.

One cluster (two worker processes on 127.0.0.1) serves the whole module. The files are
small and the shipped weights run on onnxruntime at width 48, so the workers never import
torch and each run takes a second or two.
"""

from __future__ import annotations

import os
import signal
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
from conftest import gradient_image
from test_cli import files_under, invoke_slim

import slimcodec.cli.cluster
from slimcodec.cli.jobs import IMAGE_SUFFIXES, SLIM_SUFFIX, Job, encode_one, plan
from slimcodec.cli.report import Report
from slimcodec.outputs import TEMP_SUFFIX

needs_distributed = pytest.mark.skipif(find_spec("distributed") is None,
                                       reason='needs dask.distributed (pip install "slimcodec[dask]")')
WIDTH = ["-w", "48"]


@pytest.fixture(scope="module")
def scheduler():
    """The address of a two-worker local cluster (one thread each), closed after the module."""
    distributed = pytest.importorskip("distributed")
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this file
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """photos/ with six small images in two levels, in an empty current folder."""
    monkeypatch.chdir(tmp_path)
    root = Path("photos")
    (root / "sub").mkdir(parents=True)
    for i in range(6):
        gradient_image(24 + 4 * i, 16 + 2 * i).save(root / ("sub" if i % 2 else ".") / f"p{i}.png")
    return root


def slim_files(folder: Path) -> dict[str, bytes]:
    """The files under ``folder`` by relative name, our hidden temporary files left out."""
    return {name: (folder / name).read_bytes() for name in files_under(folder) if not name.endswith(TEMP_SUFFIX)}


def encode_or_die_once(job: Job):
    """``encode_one``, except that the first worker to reach ``die.png`` starts its temporary
    file and is killed (SIGKILL) halfway through writing it."""
    flag = job.src.parent.parent / "died-once"
    if job.src.name == "die.png" and not flag.exists():
        flag.write_text(str(os.getpid()))
        job.dst.parent.mkdir(parents=True, exist_ok=True)
        temp = job.dst.parent / f".{job.dst.name}.{os.getpid()}.0badf00d{TEMP_SUFFIX}"
        temp.write_bytes(b"SLIM half a file")
        os.kill(os.getpid(), signal.SIGKILL)
    return encode_one(job)


@needs_distributed
def test_cluster_outputs_are_byte_identical_to_one_process(scheduler, folder):
    invoke_slim(["encode", folder, "-o", "serial", *WIDTH, "-j", "1", "--threads", "1"])
    result = invoke_slim(["encode", folder, "-o", "cluster", *WIDTH, "--scheduler", scheduler])
    assert result.stderr.splitlines()[-1].startswith("6 files encoded;")
    assert files_under(Path("cluster")) == ["p0.slim", "p2.slim", "p4.slim",
                                            "sub/p1.slim", "sub/p3.slim", "sub/p5.slim"]
    assert slim_files(Path("cluster")) == slim_files(Path("serial"))


@needs_distributed
def test_cluster_decode_matches_one_process(scheduler, folder):
    invoke_slim(["encode", folder, "-o", "slim", *WIDTH, "-j", "1", "--threads", "1"])
    invoke_slim(["decode", "slim", "-o", "serial", "-j", "1", "--threads", "1"])
    result = invoke_slim(["decode", "slim", "-o", "cluster", "--scheduler", scheduler])
    assert result.stderr.splitlines()[-1].startswith("6 files decoded;")
    assert slim_files(Path("cluster")) == slim_files(Path("serial"))


@needs_distributed
def test_corrupt_input_fails_alone_and_rerun_skips_the_rest(scheduler, folder):
    (folder / "sub" / "bad.png").write_text("not a picture")
    result = invoke_slim(["encode", folder, "-o", "out", *WIDTH, "--scheduler", scheduler], exit_code=1)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: cannot encode photos/sub/bad.png: not an image Pillow can read"]
    assert result.stderr.splitlines()[-1].startswith("6 files encoded, 1 file failed;")
    assert len(files_under(Path("out"))) == 6

    (folder / "sub" / "bad.png").unlink()
    rerun = invoke_slim(["encode", folder, "-o", "out", *WIDTH, "--scheduler", scheduler, "--skip-existing"])
    assert rerun.stderr.splitlines()[-1].startswith("0 files encoded, 6 files skipped;")


@needs_distributed
def test_killed_worker_loses_no_file_and_leaves_no_partial_output(scheduler, folder):
    gradient_image(30, 20).save(folder / "sub" / "die.png")
    planned = plan([folder], "out", IMAGE_SUFFIXES, SLIM_SUFFIX)
    jobs = [Job(src, dst, width=48) for src, dst in planned.pairs]
    report = Report("encode", quiet=True, total=len(jobs))
    slimcodec.cli.cluster.run_on_cluster(jobs, encode_or_die_once, report, scheduler, skip_existing=True)

    assert (folder / "died-once").exists()  # a worker was killed while writing die.slim
    # A file the dead worker finished but had not yet reported is rerun and finds its output:
    # skipped, as an output another run wrote meanwhile. None is lost, none failed.
    assert report.failure_count == 0 and report.done_count + report.skipped_count == 7
    assert report.return_code == 0
    invoke_slim(["encode", folder, "-o", "serial", *WIDTH, "-j", "1", "--threads", "1"])
    assert slim_files(Path("out")) == slim_files(Path("serial"))  # all 7, complete and identical
    leftovers = [p.name for p in Path("out", "sub").iterdir() if p.name.endswith(TEMP_SUFFIX)]
    assert len(leftovers) == 1  # the dead worker's half file: hidden, never under an output's name

    rerun = invoke_slim(["encode", folder, "-o", "out", *WIDTH, "--scheduler", scheduler, "--skip-existing"])
    assert f"removed out/sub/{leftovers[0]} (a temporary file left by a killed run)" in rerun.stderr
    assert rerun.stderr.splitlines()[-1].startswith("0 files encoded, 7 files skipped;")
    assert not [p for p in Path("out").rglob("*") if p.name.endswith(TEMP_SUFFIX)]


@needs_distributed
def test_unreachable_scheduler_is_one_line_usage_error(folder, monkeypatch):
    monkeypatch.setattr(slimcodec.cli.cluster, "CONNECT_TIMEOUT_S", 1)
    result = invoke_slim(["encode", folder, "-o", "out", *WIDTH, "--scheduler", "tcp://127.0.0.1:1"],
                         exit_code=2)
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: --scheduler tcp://127.0.0.1:1: cannot connect")
    assert not Path("out").exists()


def test_scheduler_without_the_dask_extra_says_what_to_install(folder, monkeypatch):
    monkeypatch.setattr(slimcodec.cli.cluster, "distributed_installed", lambda: False)
    result = invoke_slim(["encode", folder, "-o", "out", "--scheduler", "tcp://127.0.0.1:8786"], exit_code=2)
    assert result.stderr.splitlines() == [
        'error: --scheduler needs dask.distributed: pip install "slimcodec[dask]"']


def test_scheduler_and_workers_option_cannot_be_combined(folder):
    result = invoke_slim(["decode", folder, "--scheduler", "tcp://127.0.0.1:8786", "-j", "2"], exit_code=2)
    assert result.stderr.splitlines() == [
        "error: --scheduler and -j/--workers cannot be combined: the cluster has its workers"]


def test_worker_with_other_weights_is_refused(monkeypatch):
    from slimcodec import runtime
    from slimcodec.weights import DEFAULT_WEIGHTS_ID

    monkeypatch.setattr(runtime, "_threads", runtime._threads)  # setup() sets this process's threads
    plugin = slimcodec.cli.cluster.WeightsPlugin(None, threads=1, weights_id="00" * 8)
    mismatch = f"worker loads weights {DEFAULT_WEIGHTS_ID}, the client 0000"
    with pytest.raises(slimcodec.cli.cluster.SlimError, match=mismatch):
        plugin.setup()
