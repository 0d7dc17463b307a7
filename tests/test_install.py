"""The distribution as a user installs it: a wheel in a fresh virtual environment, used outside any
source checkout. The library imports without the benchmark; the benchmark finds its recipes and stage
table inside the installed package and adds `avfusion benchmark` to the installed command."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, args))} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, a working directory outside the checkout): the wheel built from a copy of the sources,
    installed with pip into a new venv; the dependencies (torch, ...) are this interpreter's, put on the
    new venv's path by a .pth line (their directory's own .pth files, e.g. an editable avfusion, are not read)."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    # without setuptools here, pip fetches it for an isolated build (the package registry)
    isolation = ["--no-build-isolation"] if _has_setuptools() else []
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", tmp / "dist", source], tmp)
    wheel = next((tmp / "dist").glob("avfusion-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp)
    python = venv / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], tmp)
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp)
                   .stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "_test_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    work = tmp / "work"
    work.mkdir()
    return python, work, wheel


def _has_setuptools() -> bool:
    import importlib.util
    return importlib.util.find_spec("setuptools") is not None


def test_the_wheel_holds_the_recipes_and_the_stage_table(installed):
    *_, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    recipes = {p.name for p in (ROOT / "src" / "avfusion_avdigits" / "recipes").glob("*.yaml")}
    assert recipes and {f"avfusion_avdigits/recipes/{r}" for r in recipes} <= names
    assert "avfusion_avdigits/stages.yaml" in names and "avfusion/py.typed" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "avfusion_avdigits.command:register" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_library_imports_without_the_benchmark(installed):
    """Every library module imports with the benchmark package made unimportable."""
    python, work, _ = installed
    code = ("import importlib, pkgutil, sys\n"
            "sys.modules['avfusion_avdigits'] = None  # any import of it now fails\n"
            "import avfusion\n"
            "names = [m.name for m in pkgutil.walk_packages(avfusion.__path__, 'avfusion.')\n"
            "         if m.name != 'avfusion.__main__']  # that one runs the command line\n"
            "for name in names:\n"
            "    importlib.import_module(name)\n"
            "print(avfusion.__file__, len(names))\n")
    out = _run([python, "-c", code], work).stdout.split()
    assert Path(out[0]).is_relative_to(python.parents[1]), out  # the installed copy, not the checkout
    assert int(out[1]) > 50


def test_installed_benchmark_runs_a_quick_stage_from_its_packaged_recipes(installed):
    """`avfusion benchmark avdigits --quick`, restricted to its stage-1 audio stream, as a user types it
    in a directory that is no source checkout."""
    python, work, _ = installed
    avfusion = python.parent / "avfusion"
    _run([avfusion, "benchmark", "avdigits", "--quick", "--stages", "unimodal_audio", "--no-figures",
          "--output", work / "run"], work)
    report = json.loads((work / "run" / "report.json").read_text())
    assert report["unimodal"]["audio"]["top1"] > 0.5  # measured 0.94 in the full --quick run; chance 0.1
    assert Path(report["config"]["recipes"]).is_relative_to(python.parents[1])
    assert (work / "run" / "checkpoints" / "unimodal_audio" / "stream.pth").is_file()
