"""The wheel carries the WGSL shaders, and an installed wheel finds them."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("hatchling")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
    )
    return next(out.glob("intricate_py-*.whl"))


def test_wheel_contains_every_shader(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("intricate_py/shaders/")}
    assert shipped == {p.name for p in (ROOT / "shaders").glob("*.wgsl")}
    assert not any(n.endswith(".pyc") or "tests/" in n for n in names)


def test_wheel_marks_the_package_typed(wheel):
    assert "intricate_py/py.typed" in zipfile.ZipFile(wheel).namelist()


def test_wheel_carries_the_names_c_export_refuses(wheel):
    assert "intricate_py/export/c_reserved.txt" in zipfile.ZipFile(wheel).namelist()


def test_installed_wheel_finds_its_shaders(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True)
    found = subprocess.run(
        [sys.executable, "-c", "from intricate_py.backends.shaders import shader_dir; print(shader_dir())"],
        cwd=tmp_path, env={"PYTHONPATH": str(target)}, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert Path(found) == target / "intricate_py" / "shaders"


def test_source_tree_finds_the_top_level_shaders():
    from intricate_py.backends.shaders import shader_dir

    assert shader_dir() == ROOT / "shaders"


def test_the_test_set_up_installs_pytorchs_cpu_build():
    """The build the parity tests run with: CI and `make torch-cpu` pin it by
    its local version (a plain `pip install torch` on Linux gets the CUDA
    build, whose triton once crashed beside Mesa's LLVM)."""
    assert 'pip install -q "torch==2.13.0+cpu"' in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "torch-cpu:" in makefile and '"torch==2.13.0+cpu" --index-url $(TORCH_INDEX)' in makefile
    assert "TORCH_INDEX ?= https://download.pytorch.org/whl/cpu" in makefile
