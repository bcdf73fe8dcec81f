"""The npm package of the browser SDK in tests: pack it, install the tarball, run its tools.

``pack_sdk`` builds and packs from a private copy of the package's sources, so a test never
races another process rebuilding ``npm/dist`` in the working tree. The build tools
(esbuild, typescript) come from the repository's ``node_modules`` (``npm ci``, which
``scripts/test.sh`` runs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NODE_MODULES = REPO / "node_modules"
PACKAGE_NAME = "@directcall/web-sdk"

# What `npm pack` reads: the manifest, the build script, the hand-written types and the SDK
# sources the build bundles.
_SOURCES = ["package.json", "package-lock.json", "README.md", "LICENSE", "npm"]
_SDK = Path("directcall/static/directcall")


def tool(name: str) -> str:
    """A program npm installed for the repository (``node_modules/.bin/<name>``)."""
    path = NODE_MODULES / ".bin" / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing: run `npm ci` in the repository (scripts/test.sh does)",
            pytrace=False,
        )
    return str(path)


def npm() -> str:
    found = shutil.which("npm")
    if found is None:
        pytest.fail("npm is needed (Debian: apt-get install npm)", pytrace=False)
    return found


def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command; fail the test with its output when it fails."""
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {result.returncode} in {cwd}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}",
            pytrace=False,
        )
    return result


def pack_sdk(workdir: Path) -> Path:
    """``npm pack`` (which builds, through ``prepack``) in a copy of the sources; the tarball."""
    tool("esbuild")
    src = workdir / "src"
    for name in _SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("dist"))
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, src / name)
    shutil.copytree(REPO / _SDK, src / _SDK)
    (src / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    out = workdir / "pack"
    out.mkdir()
    result = run([npm(), "pack", "--json", "--pack-destination", str(out)], cwd=src)
    # npm prints prepack's output before the JSON report.
    report = json.loads(result.stdout[result.stdout.index("[") :])
    return out / report[0]["filename"]


def tarball_names(tarball: Path) -> list[str]:
    """The files in the tarball, without npm's ``package/`` prefix."""
    with tarfile.open(tarball) as tar:
        return sorted(m.name.removeprefix("package/") for m in tar.getmembers() if m.isfile())


def install(tarball: Path, app_dir: Path) -> Path:
    """``npm install <tarball>`` into a new app folder, offline; the installed package's folder."""
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "package.json").write_text(
        json.dumps({"name": "host-app", "version": "1.0.0", "private": True, "type": "module"})
    )
    # --offline: the package has no dependencies, so nothing may come from a registry.
    run(
        [npm(), "install", "--offline", "--no-audit", "--no-fund", str(tarball)],
        cwd=app_dir,
        timeout=120,
    )
    return app_dir / "node_modules" / PACKAGE_NAME
