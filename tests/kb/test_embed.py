"""kb.embed wiring: one home for each model id, and no import circle in kb/ (lazy imports count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import kb
from kb.embed import MINILM_ID, SHORT_NAMES, MiniLMEmbedder, _resolve, embedder_names
from kb.minilm_query import MiniLMQueryEncoder

KB_DIR = Path(kb.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every kb module ``path`` imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "kb":
            found |= {f"kb.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kb."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("kb.")}
    return found


def test_kb_has_no_import_cycle() -> None:
    graph = {f"kb.{p.stem}": _imports(p) for p in KB_DIR.glob("*.py")}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for dep in sorted(graph.get(module, ())):
            assert dep not in path, "import cycle: " + " -> ".join([*path[path.index(dep) :], dep])
            if dep not in done:
                visit(dep, [*path, dep])
        done.add(module)

    for module in sorted(graph):
        visit(module, [module])


def test_minilm_has_one_id_and_one_shipped_copy() -> None:
    assert SHORT_NAMES["minilm"] == MINILM_ID == MiniLMEmbedder.model_id == MiniLMQueryEncoder.model_id
    assert embedder_names("use+minilm")[1] == MINILM_ID
    assert (Path(_resolve(MINILM_ID)) / "model.safetensors").is_file()
    assert _resolve("some/other-model") == "some/other-model"
