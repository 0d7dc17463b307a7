"""Dependencies point one way: every layer's imports, checked from the source (module level and inside
functions alike)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "avfusion"
BENCHMARK = SRC.with_name("avfusion_avdigits")
#: the user-facing layers: nobody below imports them
TOP = ("avfusion.cli", "avfusion.commands", "avfusion.demo", "avfusion_avdigits")
#: every top-level name of the package (its layers and modules)
EVERYTHING = tuple(f"avfusion.{p.stem}" for p in sorted(SRC.iterdir()) if p.stem != "__init__" and
                   (p.suffix == ".py" or (p / "__init__.py").is_file()))
#: layer -> the packages it must not import
RULES = {
    # decoding sits at the bottom: its typed errors, and the signal functions its audio windows return
    # through (resampling, the repeat rule), are all it may use
    "media": tuple(name for name in EVERYTHING if name not in ("avfusion.media", "avfusion.errors", "avfusion.audio")),
    "audio.py": tuple(name for name in EVERYTHING if name not in ("avfusion.audio", "avfusion.errors")),
    "models": (*TOP, "avfusion.checkpoints", "avfusion.data", "avfusion.engine", "avfusion.tasks", "avfusion.inference",
               "avfusion.metrics"),
    "metrics": (*TOP, "avfusion.models", "avfusion.checkpoints", "avfusion.data", "avfusion.engine", "avfusion.tasks",
                "avfusion.inference"),
    "checkpoints": (*TOP, "avfusion.data", "avfusion.engine", "avfusion.tasks", "avfusion.inference"),
    "data": (*TOP, "avfusion.models", "avfusion.checkpoints", "avfusion.engine", "avfusion.tasks", "avfusion.inference"),
    "engine": (*TOP, "avfusion.tasks", "avfusion.inference"),
    "tasks": (*TOP, "avfusion.inference"),
    "inference": (*TOP, "avfusion.tasks", "avfusion.engine"),
    # the web page sits beside the commands: it runs inference as they do, and knows nothing of them
    "demo": ("avfusion.cli", "avfusion.commands", "avfusion_avdigits", "avfusion.tasks", "avfusion.engine"),
    "randomness.py": (*TOP, "avfusion.models", "avfusion.data", "avfusion.engine", "avfusion.tasks", "avfusion.inference"),
}
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


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_imports_only_what_lies_below_it(layer):
    paths = [SRC / layer] if layer.endswith(".py") else sorted((SRC / layer).rglob("*.py"))
    assert paths, layer
    bad = []
    for path in paths:
        rel = str(path.relative_to(SRC))
        for line, name in imports(path):
            if name.startswith(RULES[layer]) and (rel, name) not in ALLOWED:
                bad.append(f"{rel}:{line} imports {name}")
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
