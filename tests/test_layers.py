"""Dependencies point one way: every layer's imports, checked from the source (module level and inside
functions alike)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "avfusion"
BENCHMARK = SRC.with_name("avfusion_avdigits")
#: every part of the library: its packages and top-level modules, by the name a rule uses
PARTS = tuple(p.name for p in sorted(SRC.iterdir())
              if p.name not in ("__init__.py", "__main__.py", "py.typed") and
              (p.suffix == ".py" or (p / "__init__.py").is_file()))
FRONT_ENDS = {"errors.py", "audio.py", "transforms.py", "randomness.py"}
LIBRARY = set(PARTS) - {"cli.py", "commands", "demo"}
#: part -> the parts it may import (besides itself and the package's own ``avfusion.__version__``); the
#: table of docs/architecture.md. The benchmark (``avfusion_avdigits``) is in no list: nothing here imports it.
MAY_IMPORT = {
    "errors.py": set(),
    "audio.py": {"errors.py"},
    "transforms.py": {"errors.py"},
    "randomness.py": {"errors.py"},
    # decoding: its typed errors, and the signal functions its audio windows return through (resampling,
    # the repeat rule)
    "media": {"errors.py", "audio.py"},
    "overlays.py": {"errors.py", "transforms.py"},
    "models": FRONT_ENDS,
    "metrics": {"errors.py"},
    "checkpoints": FRONT_ENDS | {"models"},
    "data": FRONT_ENDS | {"media"},
    "engine": FRONT_ENDS | {"media", "models", "metrics", "checkpoints", "data", "overlays.py"},
    "tasks": LIBRARY - {"inference", "tasks"},
    "inference": LIBRARY - {"tasks", "engine", "inference"},
    # the web page sits beside the commands: it runs inference as they do, and knows nothing of them
    "demo": LIBRARY - {"tasks", "engine"},
    "commands": set(PARTS) - {"commands"},
    "cli.py": set(PARTS) - {"cli.py"},
}


def part_of(name: str) -> str | None:
    """``avfusion.media.clip`` -> ``media``; ``avfusion.audio`` -> ``audio.py``; None for ``avfusion``
    itself (its version) and for names outside the library."""
    parts = name.split(".")
    if parts[0] != "avfusion" or len(parts) == 1:
        return None
    return parts[1] if (SRC / parts[1]).is_dir() else f"{parts[1]}.py"


#: known exceptions, each with its reason (none today)
ALLOWED: set[tuple[str, str]] = set()


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in `path`; relative imports of the package's own files are resolved
    (``from ..audio import x`` in avfusion/media/ is avfusion.audio)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level > 0 and path.is_relative_to(SRC):
            package = ["avfusion", *path.relative_to(SRC).parent.parts]
            base = package[:len(package) - node.level + 1]
            out.append((node.lineno, ".".join([*base, node.module] if node.module else base)))
    return out


def test_every_part_has_a_rule():
    assert set(MAY_IMPORT) == set(PARTS), set(PARTS) ^ set(MAY_IMPORT)


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_layer_imports_only_what_lies_below_it(layer):
    paths = [SRC / layer] if layer.endswith(".py") else sorted((SRC / layer).rglob("*.py"))
    assert paths, layer
    bad = []
    for path in paths:
        rel = str(path.relative_to(SRC))
        for line, name in imports(path):
            part = part_of(name)
            if part is not None and part != layer and part not in MAY_IMPORT[layer] and (rel, name) not in ALLOWED:
                bad.append(f"{rel}:{line} imports {name} ({layer} may import {sorted(MAY_IMPORT[layer])})")
    assert not bad, "\n".join(bad)


def test_the_library_never_imports_the_benchmark():
    """The AV-Digits pipeline (``avfusion_avdigits``) sits beside the library and uses it; the library
    (every module, the command line included) installs and runs without it."""
    bad = [f"{path.relative_to(SRC)}:{line} imports {name}" for path in sorted(SRC.rglob("*.py"))
           for line, name in imports(path) if name.startswith("avfusion_avdigits")]
    assert not bad, "\n".join(bad)


def test_the_benchmark_uses_the_library_as_a_user_does():
    """It reaches no command-line module: it registers its own command through the entry point."""
    bad = [f"{path.name}:{line} imports {name}" for path in sorted(BENCHMARK.rglob("*.py"))
           for line, name in imports(path) if name.startswith(("avfusion.cli", "avfusion.commands"))]
    assert not bad, "\n".join(bad)


def test_the_rules_catch_a_violation(tmp_path):
    """The scan sees imports inside functions too (the lazy imports this package uses everywhere)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from avfusion.cli import main\n    return main\n")
    assert imports(module) == [(2, "avfusion.cli")]
    assert part_of("avfusion.cli") not in MAY_IMPORT["models"]
    assert part_of("avfusion.media.clip") == "media" and part_of("avfusion.audio") == "audio.py"


def test_relative_imports_are_resolved():
    """`from .x import y` inside a layer counts as the absolute name, so a layer cannot slip past its rule."""
    names = {name for _, name in imports(SRC / "media" / "clip.py")}
    assert {"avfusion.media.audio", "avfusion.errors"} <= names


def test_no_module_imports_another_modules_private_names():
    """Shared machinery is public (e.g. avfusion.media's FrameCursor, frame_at, to_rgb); a leading underscore
    means "this module's own"."""
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and ((node.module or "").startswith("avfusion") or node.level > 0):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    bad.append(f"{path.relative_to(SRC)}:{node.lineno} imports {private} from {node.module}")
    assert not bad, "\n".join(bad)
