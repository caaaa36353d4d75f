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
