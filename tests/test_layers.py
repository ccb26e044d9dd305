"""The folders are layers: ``trainables/`` runs inside Ray workers and Tune trials and imports
neither the driver (``orchestrator/``) nor ``search_spaces/``; ``search_spaces/`` (search spaces,
claim files, the metrics a claim may name) may import ``trainables/`` but not the driver. Every
import counts, at module level or inside a function.

Inside the driver, the packages are layers too (``PACKAGES``: what each may import of the others;
``report`` is the bottom one), and no modules of ``orchestrator/`` import each other in a circle."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# folder -> the top-level packages no file in it may import
FORBIDDEN = {"trainables": ("orchestrator", "search_spaces"), "search_spaces": ("orchestrator",)}

# The driver's modules every package may import: presets and --set, the MLflow URI, starting Ray
# (and the driver's phases), the run notes, a timed step loop.
SHARED = ("config", "tracking", "ray_run", "run_notes", "timing")
# orchestrator package -> the other orchestrator packages (or verb modules) it may import. The CLI
# verbs (cli.py, *_cmd.py, train.py, ...) may import anything; a package imports no verb, except
# the bench, which times a real training run through ``train.run_training``.
PACKAGES = {
    "report": (),
    "bench": ("train",),
    "sweep": ("report",),
    "latent": ("report",),
    "features_svm": ("report",),
    "search": ("sweep", "report"),
}


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
    assert all((ROOT / "orchestrator" / package / "__init__.py").is_file() for package in PACKAGES)


# ---------------------------------------------------------------------------------------------
# The driver's packages, and circles
# ---------------------------------------------------------------------------------------------

def driver_sources():
    """Module name -> source of every module under orchestrator/ (a package as its ``__init__``)."""
    sources = {}
    for path in sorted((ROOT / "orchestrator").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        sources[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path.read_text()
    return sources


def import_graph(sources):
    """Module -> {(line, module) it imports}, among the modules of ``sources`` only: ``from a.b import c``
    is an edge to ``a.b.c`` when that is a module, else to ``a.b``; relative imports are resolved."""
    graph = {}
    for name, text in sources.items():
        package = name if _is_package(name, sources) else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(text, filename=name)):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in sources else base for alias in node.names]
            else:
                continue
            edges.update((node.lineno, t) for t in targets if t in sources and t != name)
        graph[name] = edges
    return graph


def _is_package(name, sources):
    return any(other.startswith(name + ".") for other in sources)


def find_cycles(graph):
    """Every circle of imports, each once, as [a, b, ..., a] (a depth-first search; a back edge closes
    a circle)."""
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for _, nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_circle_in_the_driver():
    cycles = find_cycles(import_graph(driver_sources()))
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_circle_check_finds_a_circle_through_a_function_level_import():
    sources = {"orchestrator": "", "orchestrator.a": "from orchestrator.b import g\n",
               "orchestrator.b": "def g():\n    from orchestrator import c\n",
               "orchestrator.c": "import orchestrator.a\n", "orchestrator.d": "from orchestrator.a import f\n"}
    assert find_cycles(import_graph(sources)) == [["orchestrator.a", "orchestrator.b", "orchestrator.c", "orchestrator.a"]]
    sources["orchestrator.c"] = "import os\n"
    assert find_cycles(import_graph(sources)) == []


def test_relative_imports_are_edges_too():
    sources = {"orchestrator": "", "orchestrator.p": "", "orchestrator.p.x": "from . import y\n",
               "orchestrator.p.y": "from .x import f\n"}
    assert find_cycles(import_graph(sources)) == [["orchestrator.p.x", "orchestrator.p.y", "orchestrator.p.x"]]


def test_each_package_imports_only_the_packages_below_it():
    sources = driver_sources()
    graph = import_graph(sources)
    top = {name.split(".")[1] for name in sources if name.count(".") >= 1}
    found = []
    for name, edges in sorted(graph.items()):
        parts = name.split(".")
        if len(parts) < 2 or (len(parts) == 2 and not _is_package(name, sources)):
            continue   # a verb or a shared module
        package = parts[1]
        allowed = {package, *SHARED, *PACKAGES.get(package, ())}
        found += [f"{name}:{line}: imports {target}" for line, target in sorted(edges)
                  if target != "orchestrator" and target.split(".")[1] not in allowed]
    assert not found, "imports across packages that PACKAGES does not allow:\n" + "\n".join(found)
    packages = {p for p in top if _is_package(f"orchestrator.{p}", sources)} - {"presets"}
    assert packages == set(PACKAGES), "every package of orchestrator/ needs its row in PACKAGES"


def test_the_package_rule_names_report_as_the_bottom():
    """report imports no other package: the sweep, the latent experiments and the studies read it."""
    assert PACKAGES["report"] == () and not any(p in PACKAGES["bench"] for p in ("sweep", "report"))
