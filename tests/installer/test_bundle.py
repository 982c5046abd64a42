"""The one-folder app from installer/: build it, start it offscreen, run two plugins headless,
and check what they wrote, their provenance, and what the bundle leaves out.

Slow (one PyInstaller build per flavour and session, ~1 min each on 2 cores; installer/README.md
has the measured times), so deselected by default; CI runs them (.ci/run):

    GDL_STUDIO_INSTALLER_TESTS=1 ./run-tests -q -m installer tests/installer
    .venv/bin/python -m pytest -m installer tests/installer          # needs the [installer] extra
    GDL_STUDIO_BUNDLE=dist/GDL-Studio .venv/bin/python -m pytest -m installer tests/installer

The last form tests an app folder built before (by `python installer/build.py`) instead.
The app runs with a clean environment (no GDL_STUDIO_PROVIDERS, no virtualenv on PATH) from a
folder outside the repository, so it must find its plugins, models and Qt inside itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gdl_studio import __version__
from gdl_studio.core.manifest import load_manifest
from gdl_studio.core.results import EXTENSIONS, read_provenance
from gdl_studio.core.supply import SUMS_NAME, asset_files

pytestmark = [pytest.mark.slow, pytest.mark.installer]

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "installer" / "build.py"
APP_EXE = "gdl-studio.exe" if sys.platform == "win32" else "gdl-studio"
NEEDED_RUNS = 2
BUILD_TIMEOUT = 900  # s per flavour: ~1 min on an idle 2-core machine
SIZE_GOAL = 500e6  # bytes unpacked, for the default (CPU) flavour
# Nothing of the training stack may be in the app: not as files, not as frozen modules.
# (`onnx` itself is in: the style plugin frees a graph's fixed input size with it.)
FORBIDDEN_TOP = {"torch", "torchvision", "torchaudio", "onnxscript", "onnx_ir"}
# Training code: plugins/<name>/train/ and gdl_studio/training/ (both import torch).
TRAINING = {"train", "training"}


@dataclass
class Bundle:
    folder: Path
    flavour: str  # "cpu" or "gpu" (installer/build.py); "given" is read from bundle.json
    info: dict[str, Any]

    @property
    def exe(self) -> Path:
        return self.folder / APP_EXE


def installed_ort() -> str | None:
    for dist in ("onnxruntime-gpu", "onnxruntime"):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return None


def flavours() -> list[Any]:
    if os.environ.get("GDL_STUDIO_BUNDLE"):
        return ["given"]
    gpu_ort = (installed_ort() or "").startswith("onnxruntime-gpu")
    skip_gpu = pytest.mark.skip(
        reason="the GPU flavour bundles onnxruntime-gpu's CUDA provider, and this environment "
        f"has {installed_ort() or 'no ONNX Runtime'} (onnxruntime-gpu has wheels for Linux and "
        "Windows on x86-64 only)"
    )
    return ["cpu", pytest.param("gpu", marks=() if gpu_ort else skip_gpu)]


def run_build(cmd: list[str], timeout: float = BUILD_TIMEOUT) -> tuple[int, str, str]:
    """Run installer/build.py; past ``timeout`` end it *and* the PyInstaller it started (a
    plain ``subprocess.run(timeout=...)`` kills only build.py and leaves PyInstaller running)."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.communicate()
        pytest.fail(f"the build took over {timeout:.0f} s: {' '.join(cmd)}")
    return proc.returncode, stdout, stderr


# Session-scoped: each flavour is built once per test session, whatever the tests' order.
@pytest.fixture(scope="session", params=flavours())
def bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    if request.param == "given":
        folder = Path(os.environ["GDL_STUDIO_BUNDLE"]).resolve()
        if not (folder / APP_EXE).is_file():
            pytest.fail(f"GDL_STUDIO_BUNDLE={folder}: no {APP_EXE} there")
    else:
        pytest.importorskip("PyInstaller", reason="needs the [installer] extra (pyinstaller)")
        out = tmp_path_factory.mktemp(f"bundle-{request.param}")
        cmd = [sys.executable, str(BUILD), "--dist", str(out / "dist"),
               "--work", str(out / "work"), "--nice", "10"]  # fmt: skip
        if request.param == "gpu":
            cmd.append("--gpu")
        code, stdout, stderr = run_build(cmd)
        assert code == 0, f"build failed:\n{stdout[-3000:]}\n{stderr[-3000:]}"
        folder = out / "dist" / "GDL-Studio"
    info_file = folder / "bundle.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    return Bundle(folder, info.get("flavour", request.param), info)


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder away from the repository, with its own GDL Studio home."""
    return tmp_path_factory.mktemp("outside")


@pytest.fixture(scope="module")
def fixture_plugins(outside: Path) -> Path:
    from tests.fixtures.plugins import make_fixture_plugins

    return make_fixture_plugins(outside / "fixture-plugins")


def app_env(home: Path) -> dict[str, str]:
    """What a user's desktop gives the app: no test settings, no Python environment."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GDL_STUDIO_", "PYTHON", "VIRTUAL_ENV", "QT_"))}  # fmt: skip
    env["PATH"] = "/usr/bin:/bin" if os.name != "nt" else env.get("PATH", "")
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["GDL_STUDIO_HOME"] = str(home)
    return env


def run_app(bundle: Bundle, outside: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bundle.exe), *args], cwd=outside, env=app_env(outside / "home"),
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def run_source(outside: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The same command from the source install, forced onto the CPU (for comparing outputs)."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", GDL_STUDIO_PROVIDERS="cpu",
               GDL_STUDIO_HOME=str(outside / "home-source"))  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "gdl_studio", *args], cwd=outside, env=env,
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def plugin_rows(bundle: Bundle, outside: Path, *extra: str) -> list[dict[str, Any]]:
    proc = run_app(bundle, outside, *extra, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


# -- starting ----------------------------------------------------------------------------------
def test_version(bundle: Bundle, outside: Path) -> None:
    proc = run_app(bundle, outside, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"GDL Studio {__version__}"


def test_window_opens_offscreen(bundle: Bundle, outside: Path) -> None:
    proc = run_app(bundle, outside, "--startup-probe")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ready "), proc.stdout + proc.stderr[-2000:]


def test_window_opens_on_x11(bundle: Bundle, outside: Path) -> None:
    """The bundled xcb platform plugin and X libraries (pytest-xvfb's X server)."""
    if not sys.platform.startswith("linux") or not os.environ.get("DISPLAY"):
        pytest.skip("needs an X display (Xvfb)")
    env = dict(app_env(outside / "home"), QT_QPA_PLATFORM="xcb", DISPLAY=os.environ["DISPLAY"])
    proc = subprocess.run([str(bundle.exe), "--startup-probe"], cwd=outside, env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ready "), proc.stdout + proc.stderr[-2000:]


def test_builtin_plugins_found_inside_the_app(bundle: Bundle, outside: Path) -> None:
    """Discovery finds the built-in plugins inside the app folder, in the same state (ok, or
    the same missing-model error) as the source install does."""
    proc = run_app(bundle, outside, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    # No shipped file was refused: bytes that differ from SHA256SUMS (the app warns on stderr).
    assert "warning" not in proc.stderr.lower(), proc.stderr[-2000:]
    rows = [r for r in json.loads(proc.stdout) if r["source"] == "builtin"]
    source = run_source(outside, "plugins", "--json")
    assert source.returncode == 0, source.stderr
    expected = {r["id"]: r["state"] for r in json.loads(source.stdout) if r["source"] == "builtin"}
    assert expected, "the source install lists no built-in plugin"
    assert {r["id"]: r["state"] for r in rows} == expected
    for row in rows:
        assert Path(row["path"]).resolve().is_relative_to(bundle.folder.resolve()), row


# -- running two plugins -----------------------------------------------------------------------
def runnable(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Usable plugins with a model and no required input file, in listing order."""
    for row in rows:
        if row["state"] != "ok" or not row["models"]:
            continue
        manifest = load_manifest(Path(row["path"]) / "plugin.toml")
        if not manifest.inputs:
            yield row


def choose_plugins(bundle: Bundle, outside: Path, fixtures: Path) -> list[dict[str, Any]]:
    """Built-in plugins with a shipped model first; fixture plugins make up the two runs."""
    chosen = [r for r in runnable(plugin_rows(bundle, outside)) if r["source"] == "builtin"]
    rows = {r["id"]: r for r in plugin_rows(bundle, outside, "--plugin-dir", str(fixtures))}
    for fixture_id in ("tinygen", "scale"):  # an image plugin with an ONNX model, a MIDI one
        if len(chosen) < NEEDED_RUNS:
            chosen.append(rows[fixture_id])
    return chosen[:NEEDED_RUNS]


def expected_provider(bundle: Bundle) -> str | None:
    """The provider line the app must report on this machine, when it is predictable."""
    if Path("/dev/nvidiactl").exists() or not sys.platform.startswith("linux"):
        return None  # a GPU machine: "CUDA", or "CPU: …" saying why not
    if bundle.flavour == "cpu":
        return "CPU: this ONNX Runtime build has no GPU provider"
    if (bundle.info.get("onnxruntime") or installed_ort() or "").startswith("onnxruntime-gpu"):
        return "CPU: no NVIDIA GPU found"
    return "CPU: this ONNX Runtime build has no GPU provider"


def same_content(a: Path, b: Path) -> bool:
    if a.suffix == ".png":
        from PIL import Image

        with Image.open(a) as ia, Image.open(b) as ib:
            return np.array_equal(np.asarray(ia), np.asarray(ib))
    if a.suffix == ".mid":
        import mido

        def notes(p: Path) -> list[Any]:
            return [m for t in mido.MidiFile(p).tracks for m in t if not m.is_meta]

        return notes(a) == notes(b)
    return a.read_text() == b.read_text()


def test_headless_run_of_two_plugins(bundle: Bundle, outside: Path, fixture_plugins: Path) -> None:
    chosen = choose_plugins(bundle, outside, fixture_plugins)
    assert len(chosen) == NEEDED_RUNS
    ort = bundle.info.get("onnxruntime") or installed_ort() or ""
    for row in chosen:
        extra = [] if row["source"] == "builtin" else ["--plugin-dir", str(fixture_plugins)]
        out = outside / f"{bundle.flavour}-{row['id']}{EXTENSIONS[row['kind']]}"
        args = [*extra, "run", row["id"], "--seed", "7", "--out", str(out)]
        proc = run_app(bundle, outside, *args)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert out.is_file() and out.stat().st_size > 0

        prov = read_provenance(out)
        assert (prov.plugin, prov.plugin_version) == (row["id"], row["version"])
        assert prov.seed == 7 and prov.params["seed"] == 7
        assert prov.app_version == __version__
        assert ort.endswith(" " + prov.ort_version), (prov.ort_version, ort)  # not "unknown"
        if row["models"]:
            default = next((m for m in row["models"] if m["default"]), row["models"][0])
            assert (prov.model, prov.model_sha256) == (default["id"], default["sha256"])
            # The app says which provider it used, in its output line and in the file.
            assert prov.provider in proc.stdout
            assert prov.provider == "CUDA" or prov.provider.startswith("CPU")
            if (want := expected_provider(bundle)) is not None:
                assert prov.provider == want

        # The frozen app computes what the source install computes (both on the CPU).
        if prov.provider.startswith("CPU") or not row["models"]:
            ref = outside / f"source-{row['id']}{EXTENSIONS[row['kind']]}"
            src = run_source(outside, *args[:-1], str(ref))
            assert src.returncode == 0, src.stderr[-2000:]
            assert same_content(out, ref), f"{row['id']}: bundle and source outputs differ"


# A private mount namespace whose /dev holds a fake /dev/nvidiactl (and the few real devices a
# process needs): the app then believes an NVIDIA driver is there and asks for CUDA.
FAKE_DRIVER = """
set -e
real=$(mktemp -d)
mount --bind /dev "$real"
mount -t tmpfs none /dev
for n in null zero full random urandom; do touch /dev/$n; mount --bind "$real/$n" /dev/$n; done
mkdir /dev/shm && mount -t tmpfs none /dev/shm
touch /dev/nvidiactl
exec "$@"
"""


def test_gpu_flavour_with_a_driver_but_no_cuda(
    bundle: Bundle, outside: Path, fixture_plugins: Path
) -> None:
    """With the CUDA provider bundled and a driver present but no CUDA/cuDNN libraries, the run
    still works, on the CPU, and the app says why (needs root and `unshare`; Linux only)."""
    if bundle.flavour != "gpu":
        pytest.skip("only the GPU flavour bundles the CUDA provider")
    if Path("/dev/nvidiactl").exists():
        pytest.skip("a real NVIDIA driver is present (the fake one is for machines without)")
    if not shutil.which("unshare") or os.geteuid() != 0:
        pytest.skip("needs root and unshare to fake a driver")
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -m is not allowed here")
    out = outside / "fake-driver.png"
    args = ["--plugin-dir", str(fixture_plugins), "run", "tinygen", "--seed", "7"]
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", FAKE_DRIVER, "sh", str(bundle.exe), *args, "--out", str(out)],
        cwd=outside, env=app_env(outside / "home"), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    provider = read_provenance(out).provider
    assert provider.startswith("CPU: CUDA could not start"), provider
    assert provider in proc.stdout


# -- what is (not) inside ----------------------------------------------------------------------
def frozen_modules(exe: Path) -> list[str]:
    """Names of the modules frozen into the app's PYZ archive."""
    readers = pytest.importorskip("PyInstaller.archive.readers")
    pkg = readers.CArchiveReader(str(exe))
    name = next(n for n in pkg.toc if n.lower().endswith(".pyz"))
    return list(pkg.open_embedded_archive(name).toc)


def test_no_torch_and_no_training_code(bundle: Bundle) -> None:
    files = [p.relative_to(bundle.folder) for p in bundle.folder.rglob("*")]
    bad = [p for p in files if (FORBIDDEN_TOP | TRAINING) & set(p.parts)
           or p.name.startswith(("libtorch", "libc10"))]  # fmt: skip
    assert not bad, bad[:20]

    modules = frozen_modules(bundle.exe)
    assert "gdl_studio.core.discovery" in modules and "gdl_studio.qt.main_window" in modules
    bad_mods = [m for m in modules
                if m.split(".")[0] in FORBIDDEN_TOP or TRAINING & set(m.split("."))]  # fmt: skip
    assert not bad_mods, bad_mods[:20]
    # Every module of every built-in plugin is in (found by the spec, never listed in it), and
    # its train/ package is not (checked above).
    plugins = REPO / "plugins"
    manifests = sorted(plugins.glob("*/plugin.toml"))
    assert manifests
    for manifest in manifests:
        for py in manifest.parent.rglob("*.py"):
            parts = py.relative_to(plugins).with_suffix("").parts
            if TRAINING & set(parts) or "__pycache__" in parts:
                continue
            name = ".".join(("gdl_studio_plugins", *parts)).removesuffix(".__init__")
            assert name in modules, name


def test_models_qt_plugins_and_providers_inside(bundle: Bundle) -> None:
    internal = bundle.folder / "_internal"
    assets = REPO / "assets"
    shipped = [*asset_files(assets), SUMS_NAME]
    assert any(rel.endswith(".onnx") for rel in shipped)
    for rel in shipped:
        copy = internal / "gdl_studio_assets" / rel
        assert copy.is_file() and copy.read_bytes() == (assets / rel).read_bytes(), rel
    qt_plugins = internal / "PySide6" / "Qt" / "plugins"
    if sys.platform.startswith("linux"):
        for name in ("platforms/libqxcb.so", "platforms/libqoffscreen.so"):
            assert (qt_plugins / name).is_file(), name
        capi = internal / "onnxruntime" / "capi"
        assert (capi / "libonnxruntime_providers_shared.so").is_file()
        has_cuda = (capi / "libonnxruntime_providers_cuda.so").is_file()
        assert has_cuda == (bundle.flavour == "gpu")
    assert any((qt_plugins / "imageformats").iterdir())
    # Trimmed: Qt translations, Qt Quick/QML and WebEngine, the FFmpeg media backend.
    assert not (internal / "PySide6" / "Qt" / "translations").exists()
    assert not list(internal.rglob("*Qt6Quick*")) and not list(internal.rglob("*WebEngine*"))
    dangling = [p for p in bundle.folder.rglob("*") if p.is_symlink() and not p.exists()]
    assert not dangling, dangling[:10]


def test_size(bundle: Bundle) -> None:
    size = sum(
        p.lstat().st_size for p in bundle.folder.rglob("*") if p.is_file() and not p.is_symlink()
    )
    print(f"{bundle.flavour} bundle: {size / 1e6:.0f} MB unpacked")
    if bundle.flavour == "cpu":
        assert size <= SIZE_GOAL, f"{size / 1e6:.0f} MB > {SIZE_GOAL / 1e6:.0f} MB"
