"""The examples in the documentation run: module doctests, README's Python and its ``slim`` lines."""

from __future__ import annotations

import doctest
import importlib
import re
import shlex
from pathlib import Path

import click
import pytest
from conftest import gradient_image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Modules whose docstrings hold examples, with the least number of examples each must run
# (so that an example cannot silently vanish). The codec's and the plugin's use the shipped weights.
DOCTESTED = {
    "slimcodec.codec": 4,
    "slimcodec.entropy.tables": 1,
    "slimcodec.files": 7,
    "slimcodec.geometry": 2,
    "slimcodec.metrics": 2,
    "slimcodec.formats.slimfile": 8,
    "slimcodec.cli.report": 1,
    "slimcodec.ratecontrol": 5,
    "slimcodec.pillow_plugin": 5,
    "slimcodec.imageio": 3,
    "slimcodec.quality": 2,
    "slimcodec.suffixes": 1,
    "slimcodec.timings": 1,
    "slimcodec.tools.peers": 1,
}


@pytest.mark.parametrize("name", sorted(DOCTESTED))
def test_module_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) of {name} failed (output above)"
    assert result.attempted >= DOCTESTED[name]


def fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_python_runs(tmp_path, monkeypatch):
    """Run README's Python blocks in a folder holding a small photo.png (shipped weights)."""
    from slimcodec import pillow_plugin

    blocks = fenced_blocks(README.read_text(), "python")
    assert blocks, "README has no Python example"
    monkeypatch.chdir(tmp_path)
    gradient_image(64, 48).save("photo.png")
    previous = pillow_plugin.set_weights(None)
    try:
        for block in blocks:
            namespace: dict = {}
            exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    finally:
        pillow_plugin.set_weights(previous)
    assert Path("photo.slim").read_bytes()[:4] == b"SLIM"


def slim_lines(text: str) -> list[list[str]]:
    """The ``slim ...`` commands in a text (``.venv/bin/slim`` too, ``&&`` chains split, comments dropped)."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        for part in line.split("&&"):
            part = part.split("  #")[0].strip()
            words = shlex.split(part, comments=True) if part else []
            if words and words[0].endswith("slim") and Path(words[0]).name == "slim":
                commands.append(words[1:])
    return commands


def check_slim_command(words: list[str]) -> None:
    from slimcodec.cli.main import cli

    help_opts = {"-h", "--help"}
    group_opts = {o for p in cli.params for o in (*p.opts, *p.secondary_opts)} | help_opts
    while words and words[0].startswith("-"):
        assert words[0] in group_opts, f"slim has no option {words[0]}"
        words = words[1:]
    if not words:
        return
    command = cli.commands.get(words[0])
    assert isinstance(command, click.Command), f"slim has no command {words[0]!r}"
    opts = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | help_opts
    for word in words[1:]:
        if word.startswith("-") and word != "-":
            assert word.split("=")[0] in opts, f"slim {words[0]} has no option {word}"


def test_readme_slim_commands_exist():
    sh = "\n".join(fenced_blocks(README.read_text(), "sh"))
    commands = slim_lines(sh)
    assert len(commands) >= 8
    for words in commands:
        check_slim_command(words)
    assert any(w[:1] == ["encode"] and "--target-bpp" in w for w in commands)


def test_cli_docstring_commands_exist():
    from slimcodec.cli import main

    commands = slim_lines(main.__doc__)
    assert len(commands) >= 4
    for words in commands:
        check_slim_command(words)


def test_readme_names_exist():
    """Every ``slimcodec.<name>`` the README mentions exists."""

    text = README.read_text()
    for dotted in sorted(set(re.findall(r"\bslimcodec(?:\.[A-Za-z_]\w*)+", text))):
        obj = importlib.import_module("slimcodec")
        for part in dotted.split(".")[1:]:
            if not hasattr(obj, part):
                obj = importlib.import_module(f"{obj.__name__}.{part}")  # a submodule, e.g. slimcodec.train
            else:
                obj = getattr(obj, part)
        assert obj is not None, dotted
