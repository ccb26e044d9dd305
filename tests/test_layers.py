"""The folders are layers: ``trainables/`` runs inside Ray workers and Tune trials and imports
neither the driver (``orchestrator/``) nor ``search_spaces/``; ``search_spaces/`` (search spaces,
claim files, the metrics a claim may name) may import ``trainables/`` but not the driver. Every
import counts, at module level or inside a function."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# folder -> the top-level packages no file in it may import
FORBIDDEN = {"trainables": ("orchestrator", "search_spaces"), "search_spaces": ("orchestrator",)}


def imported_modules(tree):
    """(line, module) for every absolute import in the tree, at any depth (``from . import x`` stays
    inside its own package)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.lineno, node.module


def upward_imports(folder, forbidden):
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module in imported_modules(ast.parse(path.read_text(), filename=str(path))):
            if module.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    return found


def test_trainables_import_nothing_from_the_driver():
    found = [hit for folder, forbidden in FORBIDDEN.items() for hit in upward_imports(folder, forbidden)]
    assert not found, "upward imports:\n" + "\n".join(found)


def test_the_check_sees_imports_inside_functions():
    tree = ast.parse("import os\n\ndef f():\n    from orchestrator.config import resolve_config\n"
                     "    import orchestrator.tracking as t\n")
    assert [m for _, m in imported_modules(tree)] == ["os", "orchestrator.config", "orchestrator.tracking"]


def test_every_layer_folder_has_python_files():
    """A renamed folder would make the check pass on nothing."""
    assert all(any((ROOT / folder).rglob("*.py")) for folder in FORBIDDEN)
