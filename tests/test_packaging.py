"""The wheel: built offline with hatchling, it ships the app's data files and nothing else."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    out_dir = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wheels = list(out_dir.glob("*.whl"))
    assert len(wheels) == 1, wheels
    assert wheels[0].name.startswith("django_directcall-")
    with zipfile.ZipFile(wheels[0]) as wheel:
        return wheel.namelist()


@pytest.mark.parametrize(
    "path",
    [
        "directcall/__init__.py",
        "directcall/templates/directcall/admin/api_keys.html",
        "directcall/migrations/__init__.py",
        "directcall/migrations/0001_initial.py",
        "directcall/management/commands/directcall_account.py",
        "directcall/py.typed",
    ],
)
def test_wheel_contains(wheel_names, path):
    assert path in wheel_names


def test_wheel_contains_static_files(wheel_names):
    static = [
        n for n in wheel_names if n.startswith("directcall/static/directcall/") and n[-1] != "/"
    ]
    assert static, "no static files in the wheel"
    assert "directcall/static/directcall/css/screens.css" in static


def test_wheel_contains_every_template_and_static_file(wheel_names):
    package = REPO / "directcall"
    for folder in ("templates", "static", "locale"):  # locale: the compiled catalogs too
        for path in (package / folder).rglob("*"):
            if path.is_file():
                assert path.relative_to(REPO).as_posix() in wheel_names


@pytest.mark.parametrize("prefix", ["example_project/", "tests/", "docs/", "scripts/", "bench/"])
def test_wheel_leaves_out(wheel_names, prefix):
    assert not [n for n in wheel_names if n.startswith(prefix)]


def test_wheel_has_only_the_package_and_metadata(wheel_names):
    top = {n.split("/", 1)[0] for n in wheel_names}
    extra = {t for t in top if t != "directcall" and not t.endswith(".dist-info")}
    assert extra == set()
    assert not [n for n in wheel_names if "__pycache__" in n or n.endswith(".pyc")]
