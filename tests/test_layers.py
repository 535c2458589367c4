"""The package layering of nvmet_p2p (nvmet_p2p/__init__.py, docs/dev/architecture.md), held for
every import -- top-level and function-level alike."""

import ast
import pathlib

import nvmet_p2p

PKG = pathlib.Path(nvmet_p2p.__file__).parent

#: (importer's package, imported package) pairs that must never occur
FORBIDDEN = {
    ("nvmet", "pci"), ("pci", "nvmet"),
    ("observe", "harness"),
    # the lower layers never import the ones above them
    ("pci", "policy"), ("pci", "observe"), ("pci", "service"), ("pci", "shell"), ("pci", "commands"),
    ("nvmet", "policy"), ("nvmet", "observe"), ("nvmet", "service"), ("nvmet", "shell"),
    ("nvmet", "commands"),
    ("policy", "observe"), ("policy", "service"), ("policy", "shell"), ("policy", "commands"),
    ("observe", "service"), ("observe", "shell"), ("observe", "commands"),
    ("service", "shell"), ("service", "commands"),
}
LEAVES = {"errors", "exits", "output", "kernel", "kmsg", "safeload", "paths"}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else "(top)"


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def imports(source: str) -> set[str]:
    """The nvmet_p2p modules a module's source imports anywhere in it (``from a import b``
    names a.b when that is a module, else a)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("nvmet_p2p"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("nvmet_p2p"))
    return found


GRAPH = {m: imports(p.read_text()) - {m} for m, p in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle_through_a_function_level_import():
    a = imports("import nvmet_p2p.nvmet.plan\n")
    b = imports("def f():\n    from nvmet_p2p.nvmet import journal\n")
    assert a == {"nvmet_p2p.nvmet.plan"} and b == {"nvmet_p2p.nvmet.journal"}
    assert cycles({"x": a, "nvmet_p2p.nvmet.plan": {"y"}, "y": {"x"}}) == [["nvmet_p2p.nvmet.plan", "x", "y"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_no_forbidden_layer_imports():
    bad = [f"{m} imports {t}" for m, targets in GRAPH.items() for t in targets
           if (_package(m), _package(t if t.count(".") > 1 else t + ".x")) in FORBIDDEN]
    assert bad == []


def test_leaves_import_only_leaves():
    bad = [f"{m} imports {t}" for m, targets in GRAPH.items()
           if m.count(".") == 1 and m.split(".")[1] in LEAVES
           for t in targets if t.split(".")[1] not in LEAVES]
    assert bad == []


#: the only imports made inside functions (issue 21: imports at the top, lazy only for a heavy
#: library on a rare path): (module, what it imports there)
LAZY = {("nvmet_p2p.harness.plots", "matplotlib"),          # the optional plots extra
        ("nvmet_p2p.harness.plots", "matplotlib.pyplot"),
        ("nvmet_p2p.pci.inventory", "nvmet_p2p.pci.addresses"),    # pyroute2, for a live read
        ("nvmet_p2p.service.watch", "nvmet_p2p.pci.addresses")}    # pyroute2, when listening


def test_imports_are_at_the_top_but_the_heavy_ones_on_rare_paths():
    found = set()
    for m, path in MODULES.items():
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import):
                        found.update((m, a.name) for a in node.names)
                    elif isinstance(node, ast.ImportFrom):
                        found.update((m, f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES
                                      else node.module) for a in node.names)
    assert found == LAZY
