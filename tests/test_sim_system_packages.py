"""The simulator tests say in one line which system packages are missing for headless rendering."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SIM_SYSTEM_PACKAGES, headless_gl_problem


def test_a_missing_egl_library_is_one_line_naming_the_packages():
    problem = headless_gl_problem(library="libEGL-not-installed.so.1", platform="linux")
    assert problem is not None and "\n" not in problem
    assert "libEGL-not-installed.so.1 is not installed" in problem
    assert problem.endswith(f"sudo apt-get install {SIM_SYSTEM_PACKAGES}")


def test_egl_without_any_vendor_is_one_line_naming_the_packages(tmp_path: Path):
    (tmp_path / "egl_vendor.d").mkdir()
    problem = headless_gl_problem(library="libc.so.6", vendor_dirs=(str(tmp_path / "egl_vendor.d"),), platform="linux")
    assert problem is not None and "no EGL vendor" in problem and SIM_SYSTEM_PACKAGES in problem


def test_an_installed_vendor_is_enough(tmp_path: Path):
    (tmp_path / "50_mesa.json").write_text("{}")
    assert headless_gl_problem(library="libc.so.6", vendor_dirs=(str(tmp_path),), platform="linux") is None


def test_the_packages_named_are_the_ones_ci_installs():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert SIM_SYSTEM_PACKAGES in " ".join(ci.split())
