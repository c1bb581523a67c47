"""Every environment variable the code reads is in the README's configuration table, and the table lists
nothing the code does not read. kb/, ingest/ and service/ read the environment only through ``Settings``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

SOURCES = ("kb", "ingest", "service", "evals", "benchmarks")
SETTINGS_ONLY = ("kb", "ingest", "service")  # everything else in them gets settings passed down
SETTINGS_MODULE = ROOT / "kb" / "config.py"
NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
ENV = re.compile(r"(?:^|\.)(?:environ|env)$")  # os.environ, environ, or the mapping from_env reads


def _name(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def env_reads(tree: ast.AST) -> set[str]:
    """Names read through ``environ.get/[]``, ``getenv``, ``env.get`` or a click ``envvar=``."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            target = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
            reads = isinstance(func, ast.Attribute) and (
                (func.attr == "get" and ENV.search(target)) or func.attr == "getenv"
            )
            if reads or (isinstance(func, ast.Name) and func.id == "getenv"):
                found.add((_name(node.args[0]) if node.args else None) or "")
            found.update(_name(k.value) or "" for k in node.keywords if k.arg == "envvar")
        elif isinstance(node, ast.Subscript) and ENV.search(ast.unparse(node.value)):
            found.add(_name(node.slice) or "")
    return {name for name in found if NAME.fullmatch(name)}


def settings_reads() -> set[str]:
    """Every variable ``Settings.from_env`` reads: the upper-case names in it, however it reads them."""
    tree = ast.parse(SETTINGS_MODULE.read_text(encoding="utf-8"))
    from_env = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "from_env")
    return {name for node in ast.walk(from_env) if (name := _name(node)) and NAME.fullmatch(name)}


def reads_by_file() -> dict[Path, set[str]]:
    files = sorted(path for top in SOURCES for path in (ROOT / top).rglob("*.py"))
    return {path: env_reads(ast.parse(path.read_text(encoding="utf-8"))) for path in files}


def documented() -> set[str]:
    """The names in the first column of the README's configuration table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("| variable | default | meaning |", 1)[1].split("\n\n", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("|")]
    return {name for cell in first_cells for name in re.findall(r"`([A-Z0-9_]+)`", cell)}


def test_the_scanner_finds_every_kind_of_read() -> None:
    code = (
        'import os\nos.environ.get("A_ONE")\nos.environ["A_TWO"]\nos.getenv("A_THREE", "x")\n'
        'env.get("A_FOUR")\n@click.option("--u", envvar="A_FIVE")\ndef f(): pass\n'
        'os.environ.setdefault("NOT_READ", "1")\nsettings.get("NOT_ENV")\n'
    )
    assert env_reads(ast.parse(code)) == {"A_ONE", "A_TWO", "A_THREE", "A_FOUR", "A_FIVE"}


def test_every_variable_read_is_documented_and_every_documented_one_is_read() -> None:
    read = settings_reads().union(*reads_by_file().values())
    assert {"KB_INDEX_DIR", "KB_MAX_QUESTION_CHARS", "KBQ_URL", "KBQ_API_KEY", "KB_LOG_LEVEL"} <= read
    table = documented()
    assert not read - table, f"read but missing from the README's configuration table: {sorted(read - table)}"
    assert not table - read, f"in the README's configuration table but read nowhere: {sorted(table - read)}"


def test_kb_ingest_and_service_read_the_environment_only_through_settings() -> None:
    outside = {
        str(path.relative_to(ROOT)): sorted(names)
        for path, names in reads_by_file().items()
        if names and path != SETTINGS_MODULE and path.relative_to(ROOT).parts[0] in SETTINGS_ONLY
    }
    assert not outside, f"read these through kb.config.Settings instead: {outside}"
