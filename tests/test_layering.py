"""The layering: the engine is a library (torch and numpy, never textual or rich); the schema and the
planner are torch-free; the renderers and panes read the typed schema and never import the engine (the
bridge is the one place the app talks to it)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

ENGINE = ROOT / "src" / "basintui" / "engine"


def test_importing_the_engine_leaves_textual_and_rich_out():
    modules = sorted(".".join(p.relative_to(ENGINE).with_suffix("").parts) for p in ENGINE.rglob("*.py")
                     if p.stem != "__init__")
    assert len(modules) > 20 and "analyses.hessian" in modules and "numerics.spectrum" in modules
    code = "import sys\n" + "".join(f"import basintui.engine.{m}\n" for m in modules) + (
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\nprint('BAD', bad)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "BAD []" in proc.stdout


def test_no_engine_module_names_textual_or_rich_in_an_import():
    for path in ENGINE.rglob("*.py"):
        tree = ast.parse(Path(path).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("textual", "rich"), f"{path}: imports {name}"


def test_the_schema_and_the_planner_import_without_torch_or_the_ui():
    code = ("import sys\nimport basintui.schema, basintui.schema.events, basintui.schema.plan, basintui.planner\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'textual', 'rich') "
            "or m.startswith('basintui.engine'))\nprint('BAD', bad)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "BAD []" in proc.stdout


def _imports(path: Path) -> list[tuple[str, int]]:
    """(module, level) of every import in a file; level > 0 for a relative import."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.module or "", node.level))
    return out


def test_renderers_and_panes_never_import_the_engine():
    ui = [*(ROOT / "src" / "basintui" / "render").rglob("*.py"), *(ROOT / "src" / "basintui" / "tui").rglob("*.py")]
    assert len(ui) > 10
    for path in ui:
        if path.name == "bridge.py":  # the one place that starts the engine (in its own process)
            continue
        for module, level in _imports(path):
            assert "engine" not in module.split("."), f"{path.relative_to(ROOT)} imports {'.' * level}{module}"
