"""The npm package of the browser SDK: what `npm pack` ships, its versions, builds and types.

The browser tests of the same tarball (a bundled app and a classic-script page making calls)
are in ``tests/e2e/test_npm_package.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.npm_package import (
    PACKAGE_NAME,
    REPO,
    install,
    pack_sdk,
    run,
    tarball_names,
    tool,
)

BUILDS = ["npm/dist/directcall.mjs", "npm/dist/directcall.js", "npm/dist/directcall.min.js"]
TONES = ["npm/dist/audio/end.wav", "npm/dist/audio/ringback.wav", "npm/dist/audio/ringtone.wav"]


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is needed (Debian: apt-get install nodejs)", pytrace=False)
    return found


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    return pack_sdk(tmp_path_factory.mktemp("npm"))


@pytest.fixture(scope="module")
def app(tmp_path_factory, tarball) -> Path:
    """A host app folder with the tarball installed (``npm install <tarball>``)."""
    app_dir = tmp_path_factory.mktemp("host-app")
    install(tarball, app_dir)
    return app_dir


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((REPO / "package.json").read_text())


def test_the_tarball_holds_the_builds_types_and_tones_only(tarball):
    assert tarball_names(tarball) == sorted(
        [
            "LICENSE",
            "README.md",
            "package.json",
            "npm/directcall.d.mts",
            "npm/global.d.ts",
            *BUILDS,
            *TONES,
        ]
    )


def test_versions_agree_with_the_python_package(tarball, app, manifest):
    python = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert manifest["version"] == python
    assert tarball.name == f"directcall-web-sdk-{python}.tgz"
    installed = json.loads((app / "node_modules" / PACKAGE_NAME / "package.json").read_text())
    assert installed["version"] == python
    # window.DirectCall.version, and the banner of each build.
    source = (REPO / "directcall/static/directcall/js/directcall.js").read_text()
    assert re.findall(r'version: "([^"]+)"', source) == [python]
    for build in BUILDS:
        text = (app / "node_modules" / PACKAGE_NAME / build).read_text()
        assert text.startswith(f"/*! {PACKAGE_NAME} {python} |"), build


def test_the_package_has_no_dependencies_and_pinned_dev_tools(manifest):
    assert "dependencies" not in manifest and "peerDependencies" not in manifest
    for name, version in manifest["devDependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned: {version}"
    lock = json.loads((REPO / "package-lock.json").read_text())
    assert lock["packages"][""]["devDependencies"] == manifest["devDependencies"]
    for name, version in manifest["devDependencies"].items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version


def test_every_export_is_in_the_tarball(tarball, manifest):
    names = set(tarball_names(tarball))
    targets: list[str] = []

    def collect(value) -> None:
        if isinstance(value, str):
            targets.append(value.removeprefix("./"))
        else:
            for item in value.values():
                collect(item)

    collect(manifest["exports"])
    for key in ("main", "module", "types", "unpkg", "jsdelivr"):
        targets.append(manifest[key].removeprefix("./"))
    for target in targets:
        if target.endswith("/*"):
            assert [n for n in names if n.startswith(target[:-1])], target
        else:
            assert target in names, target
    assert manifest["exports"]["."]["types"] == "./npm/directcall.d.mts"
    assert next(iter(manifest["exports"]["."])) == "types"  # TypeScript reads the first match


def test_no_build_uses_import_meta(app):
    # A bundle has no URL of its own: import.meta would resolve the server and the tones
    # next to it (ESM), or throw "Invalid URL" on load (IIFE).
    for build in BUILDS:
        text = (app / "node_modules" / PACKAGE_NAME / build).read_text()
        assert "import.meta" not in text, build


def test_the_es_module_loads_outside_a_browser(app):
    # Server-side rendering and test runners import the package without a window.
    script = f"""
      const sdk = await import({json.dumps(PACKAGE_NAME)});
      console.log(JSON.stringify({{names: Object.keys(sdk).sort(), err: sdk.ERR,
                                   global: typeof globalThis.DirectCall}}));
    """
    result = run([node(), "--input-type=module", "-e", script], cwd=app)
    loaded = json.loads(result.stdout)
    assert loaded["names"] == ["DirectCallClient", "ERR", "initDirectCall"]
    assert loaded["err"]["MIC_UNAVAILABLE"] == "ERR_MIC_UNAVAILABLE"
    assert loaded["global"] == "undefined"


def _ts_checks(app: Path) -> str:
    """TypeScript that fails to compile unless the declared exports and ERR codes are exactly
    the runtime's (read from the installed ES module)."""
    script = f"""
      const sdk = await import({json.dumps(PACKAGE_NAME)});
      console.log(JSON.stringify({{names: Object.keys(sdk), err: Object.keys(sdk.ERR)}}));
    """
    runtime = json.loads(run([node(), "--input-type=module", "-e", script], cwd=app).stdout)
    names = ", ".join(f"{n}: true" for n in runtime["names"])
    codes = ", ".join(f"{c}: true" for c in runtime["err"])
    return (
        f'import * as sdk from "{PACKAGE_NAME}";\n'
        "// Both ways: a missing key and an extra key are errors.\n"
        f"export const exported: Record<keyof typeof sdk, true> = {{ {names} }};\n"
        f"export const codes: Record<keyof typeof sdk.ERR, true> = {{ {codes} }};\n"
    )


@pytest.mark.parametrize(
    "compiler_options",
    [
        {"module": "nodenext", "moduleResolution": "nodenext"},
        {"module": "esnext", "moduleResolution": "bundler"},
    ],
    ids=["nodenext", "bundler"],
)
def test_the_types_check_against_the_usage_files(app, tmp_path, compiler_options):
    project = tmp_path / "ts"
    shutil.copytree(app, project, symlinks=True)
    for name in ("usage.ts", "usage-global.ts"):
        shutil.copy2(REPO / "npm" / name, project / name)
    (project / "runtime.ts").write_text(_ts_checks(app))
    config = {
        "compilerOptions": {
            **compiler_options,
            "target": "es2022",
            "lib": ["es2022", "dom"],
            "types": [],
            "strict": True,
            "exactOptionalPropertyTypes": True,
            "noEmit": True,
        },
        "files": ["usage.ts", "usage-global.ts", "runtime.ts"],
    }
    (project / "tsconfig.json").write_text(json.dumps(config))
    run([tool("tsc"), "-p", str(project / "tsconfig.json")], cwd=project)


def test_the_types_refuse_a_wrong_call(app, tmp_path):
    # The check above can fail: a receiver that is not a string does not compile.
    project = tmp_path / "ts"
    shutil.copytree(app, project, symlinks=True)
    (project / "bad.ts").write_text(
        f'import {{ initDirectCall }} from "{PACKAGE_NAME}";\n'
        "export async function f() {\n"
        "  const c = await initDirectCall({ accountId: 'a', apikey: 'k', cuid: 'student_sam',"
        " clevertap: null });\n"
        "  await c.call(42, 'context');\n"
        "}\n"
    )
    config = {
        "compilerOptions": {
            "module": "nodenext",
            "target": "es2022",
            "lib": ["es2022", "dom"],
            "types": [],
            "strict": True,
            "noEmit": True,
        },
        "files": ["bad.ts"],
    }
    (project / "tsconfig.json").write_text(json.dumps(config))
    result = subprocess.run(
        [tool("tsc"), "-p", str(project / "tsconfig.json")],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "bad.ts(4," in result.stdout and "TS2345" in result.stdout


@pytest.mark.parametrize("fmt", ["esm", "iife"])
def test_an_app_bundles_from_the_installed_package(app, tmp_path, fmt):
    entry = tmp_path / "app.js"
    entry.write_text(
        f'import {{ initDirectCall, ERR }} from "{PACKAGE_NAME}";\n'
        "window.app = { initDirectCall, ERR };\n"
    )
    shutil.copy2(entry, app / "entry.js")
    out = tmp_path / f"bundle-{fmt}.js"
    run(
        [tool("esbuild"), "entry.js", "--bundle", f"--format={fmt}", f"--outfile={out}"],
        cwd=app,
    )
    text = out.read_text()
    assert "import.meta" not in text
    assert "function initDirectCall" in text
    assert "v1/init" in text


# The original SDK's import line, unchanged (docs/migrating.md).
ORIGINAL_APP = (
    "import {initDirectCall} from 'clevertap-directcall-sdk'\nwindow.app = { initDirectCall }\n"
)


def test_the_original_import_line_through_an_npm_alias(tarball, tmp_path):
    # package.json: "clevertap-directcall-sdk": "file:directcall-web-sdk-X.tgz" (or, once
    # published, "npm:@directcall/web-sdk@X"): installed under the original's name.
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "package.json").write_text(json.dumps({"name": "app", "private": True}))
    run(
        [
            shutil.which("npm") or "npm",
            "install",
            "--offline",
            "--no-audit",
            "--no-fund",
            f"clevertap-directcall-sdk@file:{tarball}",
        ],
        cwd=app_dir,
    )
    installed = app_dir / "node_modules" / "clevertap-directcall-sdk" / "package.json"
    assert json.loads(installed.read_text())["name"] == PACKAGE_NAME
    (app_dir / "app.js").write_text(ORIGINAL_APP)
    run([tool("esbuild"), "app.js", "--bundle", "--outfile=out.js"], cwd=app_dir)
    assert "function initDirectCall" in (app_dir / "out.js").read_text()


def test_the_original_import_line_through_a_bundler_alias(app, tmp_path):
    (app / "original.js").write_text(ORIGINAL_APP)
    out = tmp_path / "out.js"
    run(
        [
            tool("esbuild"),
            "original.js",
            "--bundle",
            f"--alias:clevertap-directcall-sdk={PACKAGE_NAME}",
            f"--outfile={out}",
        ],
        cwd=app,
    )
    assert "function initDirectCall" in out.read_text()
