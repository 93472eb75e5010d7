"""Layering: who may import whom, and where an architecture may be named.

- The library never imports its programs: slimcodec.tools is used by the cli and by people, not by
  slimcodec; nor does it import the CLI (slimcodec.cli), and neither do the tools.
- The CLI imports the tools only inside the commands that run them (``slim eval``, ``slim bench``).
- Only the architectures' registry (slimcodec/latents/__init__.py) names an architecture, and no
  module outside slimcodec/latents/ compares architecture names, asks a model what it has or a
  latents object which symbols it holds: they ask the registry (slimcodec.latents).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from slimcodec.latents import ARCHITECTURES

ROOT = Path(__file__).resolve().parents[1]
# slimcodec/ and formats/ (installed as slimcodec.formats); cli/ and slimcodec/tools/ may import the tools
LIBRARY = sorted([p for p in (ROOT / "slimcodec").rglob("*.py") if "tools" not in p.relative_to(ROOT).parts]
                 + list((ROOT / "formats").glob("*.py")))
TOOLS = sorted((ROOT / "slimcodec" / "tools").rglob("*.py"))
CLI = sorted((ROOT / "cli").rglob("*.py"))
# where the per-architecture rule applies: every shipped module and the vectors' generator
SOURCES = sorted({*LIBRARY, *TOOLS, *CLI, *(ROOT / "formats").rglob("*.py")})
REGISTRY = ROOT / "slimcodec" / "latents" / "__init__.py"
ARCHITECTURE_MODULES = ROOT / "slimcodec" / "latents"


def _named_modules(nodes) -> set[str]:
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in the file names (at any depth, lazy ones too)."""
    return _named_modules(ast.walk(ast.parse(path.read_text(), str(path))))


def module_level_imports(path: Path) -> set[str]:
    """The modules the file imports when it is imported (not inside functions or classes)."""
    return _named_modules(ast.parse(path.read_text(), str(path)).body)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


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


def test_the_cli_is_found():
    assert {"cli/main.py", "cli/parallel.py", "cli/cluster.py"} <= {rel(p) for p in CLI}


def test_neither_the_library_nor_the_tools_import_the_cli():
    offenders = {rel(p): sorted(m for m in imported_modules(p) if within(m, "slimcodec.cli"))
                 for p in LIBRARY + TOOLS}
    assert not {k: v for k, v in offenders.items() if v}


def test_the_cli_imports_the_tools_only_inside_the_commands_that_run_them():
    offenders = {rel(p): sorted(m for m in module_level_imports(p) if within(m, "slimcodec.tools")) for p in CLI}
    assert not {k: v for k, v in offenders.items() if v}


def test_only_the_registry_names_an_architecture():
    offenders = {}
    for path in SOURCES:
        if path == REGISTRY:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                named = sorted(a for a in ARCHITECTURES if a in node.value)
                if named:
                    offenders.setdefault(rel(path), []).append((node.lineno, named))
    assert not offenders


def _architecture_questions(tree: ast.AST) -> list[tuple[int, str]]:
    """Places that dispatch on the architecture instead of asking the registry: comparisons of an
    ``architecture`` (name or attribute), ``hasattr`` on a model, and latents looked up by a key."""
    found = []

    def is_architecture(n: ast.AST) -> bool:
        return (isinstance(n, ast.Name) and n.id == "architecture") or (
            isinstance(n, ast.Attribute) and n.attr == "architecture")

    def is_latents(n: ast.AST) -> bool:
        return isinstance(n, ast.Name) and n.id == "latents"

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            equality = any(isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)) for op in node.ops)
            if equality and any(is_architecture(o) for o in operands):  # (``in ARCHITECTURES`` asks the registry)
                found.append((node.lineno, "compares an architecture"))
            if (any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops) and is_latents(operands[-1])
                    and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)):
                found.append((node.lineno, "asks latents which symbols they hold"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr":
            target = node.args[0] if node.args else None
            if (isinstance(target, ast.Name) and "model" in target.id) or (
                    isinstance(target, ast.Attribute) and target.attr == "model"):
                found.append((node.lineno, "asks a model what it has"))
        elif (isinstance(node, ast.Subscript) and is_latents(node.value) and isinstance(node.slice, ast.Constant)
              and isinstance(node.slice.value, str)):
            found.append((node.lineno, "looks latents up by a key"))
    return sorted(found)


def test_no_module_outside_the_architecture_modules_dispatches_on_the_architecture():
    offenders = {}
    for path in SOURCES:
        if ARCHITECTURE_MODULES in path.parents:
            continue
        if found := _architecture_questions(ast.parse(path.read_text(), str(path))):
            offenders[rel(path)] = found
    assert not offenders


def test_the_architecture_rule_catches_what_0_2_did():
    code = (
        "if wts.architecture == HYPERPRIOR:\n    pass\n"
        "if not hasattr(model, 'hyper_analysis'):\n    pass\n"
        "if 'z' in latents:\n    bits = latents['z']\n"
    )
    kinds = [kind for _, kind in _architecture_questions(ast.parse(code))]
    assert kinds == ["compares an architecture", "asks a model what it has", "asks latents which symbols they hold",
                     "looks latents up by a key"]


def test_every_registered_architecture_has_its_codec_module():
    for arch in ARCHITECTURES.values():
        assert (ROOT / (arch.module.replace(".", "/") + ".py")).is_file(), arch
        for name in ("encode_payload", "decode_payload", "payload_bits", "hyper_latents", "torch_stages",
                     "model_class", "file_extras", "load_extras", "bundle_arrays", "bundle_extras", "GRAPH_STAGES"):
            assert hasattr(arch.codec, name), (arch.name, name)
