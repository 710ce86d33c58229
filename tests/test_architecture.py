"""The layers of ``docs/architecture.md`` hold: the package is folders by concern, each folder in one layer, and no
module imports one from a folder of its own layer or a higher one (imports inside functions included); modules
of one folder may import each other. Every module lives in a folder with a layer."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "asr"
# folder (or top-level module) -> layer; docs/architecture.md draws the same table
LAYERS = {
    "core": 0,
    "data": 1,
    "text": 2,
    "corpora": 3,
    "features": 3,
    "lm": 3,
    "search": 4,
    "model": 5,
    "train": 6,
    "decode": 6,
    "recognize": 6,
    "score": 7,  # reads what training and decoding wrote
    "pipeline": 8,
    # the applications
    "serve": 9,
    "cli": 10,
    "benchmarks": 10,
    "__main__": 11,
    "asr": 11,  # the package face (asr.load_model)
}


def _room(module: str) -> str:
    """``asr.text.lexicon`` -> ``text``; ``asr`` -> ``asr``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "asr"


def _modules() -> dict[str, set[str]]:
    """Every module of the package -> the ``asr`` modules it imports."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "asr":
                deps |= {f"asr.{a.name}" for a in node.names if node.module == "asr" and a.name != "__version__"}
                deps |= {node.module} if node.module != "asr" else set()
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] == "asr"}
        out[name] = deps - {name}
    return out


def test_every_module_is_in_a_folder_with_a_layer():
    modules = _modules()
    assert [m for m in modules if _room(m) not in LAYERS] == []
    # the only modules outside folders are the applications and the package face
    assert sorted(m for m in modules if m.count(".") == 1 and not (PACKAGE / _room(m)).is_dir()) == [
        "asr.__main__",
        "asr.cli",
    ]


def test_no_folder_imports_its_own_layer_or_a_higher_one():
    wrong = [
        f"{module} ({_room(module)}, layer {LAYERS[_room(module)]}) imports {dep} "
        f"({_room(dep)}, layer {LAYERS[_room(dep)]})"
        for module, deps in _modules().items()
        for dep in sorted(deps)
        if _room(dep) != _room(module) and LAYERS[_room(dep)] >= LAYERS[_room(module)]
    ]
    assert wrong == []


MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_80_lines():
    """A function does one job a reader can hold (argument tables are split by command, too)."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []
