"""No module of orchestrator imports itself through others.

import-linter's contracts (pyproject.toml, run by ``make lint``) say which way the layers'
imports point; this says there is no circle at all, between any two modules. Imports made
only for type checking and those inside functions count: the provision ↔ preflight cycle of
issue 14 was one of each.
"""

from __future__ import annotations

import grimp


def cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """Each circle of imports once, as the modules met along it (the first repeated last)."""
    found: dict[frozenset[str], tuple[str, ...]] = {}
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                found.setdefault(frozenset(back), (importer, *back))
    return sorted(found.values())


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("orchestrator", cache_dir=None)
    found = [" -> ".join(cycle) for cycle in cycles(graph)]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_a_cycle_is_found_and_named_once() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.plan", "pkg.preflight", "pkg.model"):
        graph.add_module(module)
    graph.add_import(importer="pkg.plan", imported="pkg.preflight")
    graph.add_import(importer="pkg.preflight", imported="pkg.plan")
    graph.add_import(importer="pkg.plan", imported="pkg.model")
    assert cycles(graph) == [("pkg.plan", "pkg.preflight", "pkg.plan")]
