"""The layers of ``docs/architecture.md`` hold: no module imports one from a higher layer (imports inside
functions included), and every module has a layer."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "asr"
LAYERS = {
    0: "errors config context fsutil textfiles procs layout phones ctc batching decoding provenance download "
    "transcript",
    1: "audio manifest tokenizer lexicon g2p pronounce augment frontend lm sphinxlm modelfile corpora corpora.*",
    2: "model onnxrt search features",
    3: "train_config train_data trainer distributed train decode report_page scoring export streaming transcribe "
    "stages crossval",
    4: "asr recipe serve cli __main__ benchmarks benchmarks.*",
}


def _layer(module: str) -> int | None:
    name = module.removeprefix("asr.") if module != "asr" else "asr"
    for layer, names in LAYERS.items():
        for pattern in names.split():
            if name == pattern or (pattern.endswith(".*") and name.startswith(pattern[:-1])):
                return layer
    return None


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


def test_every_module_has_a_layer():
    assert [m for m in _modules() if _layer(m) is None] == []


def test_no_module_imports_a_higher_layer():
    wrong = [
        f"{module} (layer {_layer(module)}) imports {dep} (layer {_layer(dep)})"
        for module, deps in _modules().items()
        for dep in sorted(deps)
        if (_layer(dep) or 0) > (_layer(module) or 0)
    ]
    assert wrong == []
