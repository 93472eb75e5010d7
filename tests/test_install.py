"""A source checkout imports as the installed package does.

README's setup is ``pip install .`` in the repository root; from that same folder the
folder ``slimcodec/`` shadows the installed package, so ``slimcodec.formats`` and
``slimcodec.cli`` (the top-level ``formats/`` and ``cli/`` folders, placed in the package
by ``package-dir``) must resolve there too (``slimcodec._CheckoutFinder``).

The install here is a wheel of the checkout unpacked into a folder (``pip install
--no-deps --target``): no dependency is installed, the ones this interpreter has are used.
The child interpreters run with ``-S``, so that no ``.pth`` file (an editable install's
finder among them) can make the checkout importable on its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BUILT_FROM = ("pyproject.toml", "README.md", "slimcodec", "formats", "cli")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of the checkout, built from a copy (so no ``build/`` lands in the tree)."""
    src = tmp_path_factory.mktemp("src")
    for name in BUILT_FROM:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(out), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (path,) = out.glob("slimcodec-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The folder the wheel is installed into (without its dependencies)."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                           "--target", str(target), str(wheel)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return target


def run_from_root(installed: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` with the repository root as the working folder, beside the non-editable install."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(installed), sysconfig.get_paths()["purelib"]]))
    return subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)


def test_the_wheel_holds_every_package_of_the_checkout(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packages = {str(p.parent.relative_to(ROOT)) for top in ("slimcodec", "formats", "cli")
                for p in (ROOT / top).rglob("__init__.py")}
    installed_as = {p.replace("formats", "slimcodec/formats", 1) if p.startswith("formats") else
                    p.replace("cli", "slimcodec/cli", 1) if p.startswith("cli") else p for p in packages}
    missing = sorted(p for p in installed_as if f"{p}/__init__.py" not in names)
    assert not missing, f"pyproject.toml's package list lacks {missing}"
    assert "slimcodec/formats/SPEC.md" in names and any(n.startswith("slimcodec/weights/") for n in names)


def test_the_checkout_shadows_the_install_and_still_imports_formats_and_cli(installed):
    proc = run_from_root(installed, "import slimcodec, slimcodec.formats.slimfile, slimcodec.cli.main\n"
                                    "print(slimcodec.__file__)\nprint(slimcodec.formats.__file__)\n"
                                    "print(slimcodec.cli.main.__file__)")
    assert proc.returncode == 0, proc.stderr
    package, formats, cli = proc.stdout.split()
    assert Path(package) == ROOT / "slimcodec" / "__init__.py"  # the shadowing this is about
    assert Path(formats) == ROOT / "formats" / "__init__.py" and Path(cli) == ROOT / "cli" / "main.py"


def test_readme_python_example_runs_from_the_repository_root(installed, tmp_path):
    from conftest import gradient_image

    gradient_image(64, 48).save(tmp_path / "photo.png")
    (block,) = re.findall(r"^From Python:\n\n```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    code = block.replace('"photo.', f'"{tmp_path.as_posix()}/photo.')  # its files in a temporary folder
    proc = run_from_root(installed, code)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "photo.slim").exists() and (tmp_path / "photo.webp").exists()


def test_slim_runs_from_the_repository_root(installed, tmp_path):
    from conftest import gradient_image

    gradient_image(40, 24).save(tmp_path / "a.png")
    slim = "import sys\nfrom slimcodec.cli.main import main\nsys.argv[0] = 'slim'\nsys.exit(main())\n"
    version = run_from_root(installed, slim.replace("sys.exit", "sys.argv[1:] = ['--version']\nsys.exit"))
    assert version.returncode == 0, version.stderr
    assert "0." in version.stdout
    for args in (["encode", str(tmp_path / "a.png"), "--width", "48"], ["decode", str(tmp_path / "a.slim"),
                                                                       "-o", str(tmp_path / "b.png")]):
        proc = run_from_root(installed, slim.replace("sys.exit", f"sys.argv[1:] = {args!r}\nsys.exit"))
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b.png").exists()
