"""The library never imports its programs: slimcodec.tools is used by the cli and by people, not by slimcodec."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# slimcodec/ and formats/ (installed as slimcodec.formats); cli/ and slimcodec/tools/ may import the tools
LIBRARY = sorted([p for p in (ROOT / "slimcodec").rglob("*.py") if "tools" not in p.relative_to(ROOT).parts]
                 + list((ROOT / "formats").glob("*.py")))


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in the file names (at any depth, lazy ones too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_library_is_found():
    names = {p.relative_to(ROOT).as_posix() for p in LIBRARY}
    assert {"slimcodec/codec.py", "slimcodec/weights.py", "formats/slimfile.py"} <= names
    assert not any(n.startswith("slimcodec/tools/") for n in names)


def test_no_library_module_imports_the_tools():
    offenders = {}
    for path in LIBRARY:
        tools = sorted(m for m in imported_modules(path) if m == "slimcodec.tools" or m.startswith("slimcodec.tools."))
        if tools:
            offenders[path.relative_to(ROOT).as_posix()] = tools
    assert not offenders


def test_using_the_public_api_loads_no_tool():
    script = (
        "import sys\n"
        "from PIL import Image\n"
        "import slimcodec\n"
        "image = Image.new('RGB', (40, 24), (200, 120, 40))\n"
        "data = slimcodec.encode(image, width=48)\n"
        "assert slimcodec.decode(data).size == (40, 24)\n"
        "slimcodec.choose_setting(image, target_bytes=10_000, scales=False)\n"
        "tools = sorted(m for m in sys.modules if m == 'slimcodec.tools' or m.startswith('slimcodec.tools.'))\n"
        "assert not tools, tools\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
