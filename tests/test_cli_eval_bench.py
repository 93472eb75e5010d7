"""``slim eval`` and ``slim bench``: click front ends of slimcodec.evaluate and slimcodec.bench."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import gradient_image

from slimcodec import bench, evaluate
from slimcodec.cli.main import cli

COMMANDS = {"eval": evaluate, "bench": bench}


def slim(args, exit_code: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args], prog_name="slim")
    assert result.exit_code == exit_code, (result.stdout, result.stderr, result.exception)
    return result


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_of_the_module_is_mirrored(name):
    command = cli.commands[name]
    click_opts = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    click_args = {p.name for p in command.params if isinstance(p, click.Argument)}
    for action in COMMANDS[name].build_parser()._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            assert set(action.option_strings) <= click_opts, f"slim {name} lacks {action.option_strings}"
        else:
            assert action.dest in click_args, f"slim {name} lacks the argument {action.dest}"
        assert action.help, action.dest


def test_options_are_forwarded(monkeypatch, tmp_path):
    calls = []

    def fake_main(argv):
        calls.append(argv)
        return 1

    monkeypatch.setattr(evaluate, "main", fake_main)
    monkeypatch.setattr(bench, "main", fake_main)
    slim(["eval", "pics", "-o", "rep", "--widths", "192,48", "--peers", "none", "--limit", 2,
          "--published", "kodak", "--threads", 1, "--no-plots", "--weights", "w.pt", "--quiet"], exit_code=1)
    assert calls[-1] == ["pics", "--output", "rep", "--widths", "192,48", "--peers", "none", "--weights", "w.pt",
                         "--limit", "2", "--published", "kodak", "--threads", "1", "--no-plots", "--quiet"]
    slim(["eval", "pics"], exit_code=1)
    assert calls[-1] == ["pics"]  # the module's own defaults apply
    slim(["bench", "--sizes", "kodak", "--repeats", 2, "--no-memory", "--no-compressai", "--json", "b.json",
          "--threads", 1], exit_code=1)
    assert calls[-1] == ["--sizes", "kodak", "--repeats", "2", "--no-compressai", "--no-memory", "--threads", "1",
                         "--json", "b.json"]
    slim(["--quiet", "bench"], exit_code=1)
    assert calls[-1] == ["--quiet"]
    slim(["bench", "--repeats", 0], exit_code=2)  # checked by click, before the module runs
    assert len(calls) == 4


def test_eval_runs(tmp_path, monkeypatch, tiny_weights_path):
    monkeypatch.chdir(tmp_path)
    Path("pics").mkdir()
    gradient_image(48, 32).save("pics/a.png")
    slim(["eval", "pics", "--weights", tiny_weights_path, "--widths", "8,4", "--peers", "none", "--no-plots",
          "-o", "rep", "--quiet"])
    results = json.loads(Path("rep/results.json").read_text())
    assert results and Path("rep/points.csv").exists()


def test_bench_runs(tmp_path, monkeypatch, tiny_weights_path):
    monkeypatch.chdir(tmp_path)
    gradient_image(32, 32).save("a.png")
    result = slim(["bench", "--image", "a.png", "--sizes", "32x32", "--weights", tiny_weights_path, "--widths", "8",
                   "--repeats", 1, "--large-repeats", 1, "--peers", "none", "--no-compressai", "--no-memory",
                   "--threads", 1, "--json", "b.json", "--quiet"])
    assert "slimcodec" in result.stdout
    assert json.loads(Path("b.json").read_text())
