"""``slim eval`` and ``slim bench``: click front ends of slimcodec.tools.evaluate and slimcodec.tools.bench."""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import gradient_image

from slimcodec.cli.main import cli
from slimcodec.tools import bench, evaluate

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


@pytest.fixture
def calls(monkeypatch):
    """The keyword arguments each ``slim eval``/``slim bench`` passes to the tool's function (which returns 1)."""
    made = []

    def fake(name):
        def run(*args, **kwargs):
            made.append((name, args, kwargs))
            return 1

        return run

    monkeypatch.setattr(evaluate, "evaluate", fake("evaluate"))
    monkeypatch.setattr(bench, "bench", fake("bench"))
    return made


def test_eval_calls_evaluate_with_typed_arguments(calls):
    slim(["eval", "pics", "-o", "rep", "--widths", "192,48", "--peers", "none", "--limit", 2,
          "--published", "kodak", "--threads", 1, "--no-plots", "--weights", "w.pt", "--quiet", "--effort", 3],
         exit_code=1)
    assert calls[-1] == ("evaluate", (Path("pics"), "rep"),
                         {"widths": [192, 48], "peers": "none", "weights": Path("w.pt"), "limit": 2,
                          "published": "kodak", "threads": 1, "plots": False, "quiet": True, "effort": 3})
    slim(["eval", "pics"], exit_code=1)
    assert calls[-1] == ("evaluate", (Path("pics"), None),  # None: the tool's own defaults apply
                         {"widths": None, "peers": None, "weights": None, "limit": None, "published": None,
                          "threads": None, "plots": True, "quiet": False, "effort": None})
    slim(["eval", "pics", "--widths", "192,x"], exit_code=2)  # checked by click, before the tool runs
    assert len(calls) == 2


def test_bench_calls_bench_with_typed_arguments(calls):
    slim(["bench", "--sizes", "kodak,64x48", "--repeats", 2, "--no-memory", "--no-compressai", "--json", "b.json",
          "--threads", 1, "--widths", "8"], exit_code=1)
    name, args, kwargs = calls[-1]
    assert (name, args) == ("bench", (bench.DEFAULT_SOURCE, ["kodak", "64x48"]))
    assert kwargs == {"widths": [8], "weights": None, "repeats": 2, "large_repeats": 3, "peers": "all",
                      "compressai": False, "compressai_large": False, "memory": False, "threads": 1,
                      "json_path": Path("b.json"), "markdown": None, "quiet": False}
    slim(["--quiet", "bench", "--image", "a.png"], exit_code=1)
    assert calls[-1][1][0] == Path("a.png") and calls[-1][2]["quiet"] is True
    slim(["bench", "--repeats", 0], exit_code=2)  # checked by click, before the tool runs
    assert len(calls) == 2


def test_bench_defaults_are_the_tools_own():
    defaults = {p.name: p.default for p in inspect.signature(bench.bench).parameters.values()}
    params = {p.name: p for p in cli.commands["bench"].params}
    ctx = click.Context(cli.commands["bench"])
    for name in ("sizes", "repeats", "large_repeats", "peers"):
        value = params[name].type_cast_value(ctx, params[name].default)
        assert list(value) == list(defaults[name]) if name == "sizes" else value == defaults[name], name


def test_usage_errors_of_the_tools_exit_2(tmp_path, monkeypatch, tiny_weights_path):
    monkeypatch.chdir(tmp_path)
    Path("empty").mkdir()
    result = slim(["eval", "empty", "--weights", tiny_weights_path, "--peers", "none"], exit_code=2)
    assert "error: empty: no images" in result.stderr
    result = slim(["bench", "--sizes", "huge", "--weights", tiny_weights_path, "--no-memory"], exit_code=2)
    assert "error: size must be kodak, 12mp or WxH, got 'huge'" in result.stderr


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
