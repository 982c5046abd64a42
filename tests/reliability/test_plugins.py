"""Broken plugins and random values: a bad manifest, an import error or a plugin that raises is
reported (listed with its error, one line from the CLI) and the other plugins keep working;
random parameter values and random decoder output give a result or a one-line refusal."""

from __future__ import annotations

import math
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from gdl_studio.cli import main
from gdl_studio.core.errors import StudioError
from gdl_studio.core.host import JobError, PluginRunError, Studio, prepare_job, run_job
from gdl_studio.core.jobs import Cancelled, TaskState
from gdl_studio.core.manifest import specs_for_model
from gdl_studio.core.midi_notes import Note, notes_to_midi
from gdl_studio.core.params import ParamSpec
from gdl_studio.core.results import Result, read_provenance, save_result
from tests.fixtures.plugins import TEXT_MANIFEST, write_plugin

GOOD = TEXT_MANIFEST.replace('id = "echo"', 'id = "PID"').replace("Echo text", "PID")
SHA = "0" * 64

# folder -> (plugin.toml text, what the listed error must say)
BAD_MANIFESTS = {
    "empty": ("", "id is required"),
    "not-toml": ("id = \n[[[", "not valid TOML"),
    "not-utf8": (b"id = '\xff\xfe'", "cannot read"),
    "missing-name": (GOOD.replace('name = "PID"\n', ""), "name is required"),
    "missing-entry": (GOOD.replace('[entry]\nrun = "compute:run"\n', ""), "entry is required"),
    "missing-run": (GOOD.replace('run = "compute:run"', 'eval = "compute:run"'),
                    "entry.run is required"),
    "name-is-a-number": (GOOD.replace('name = "PID"', "name = 3"), "name must be str, not int"),
    "api-is-a-string": (GOOD.replace("api = 1", 'api = "1"'), "api must be int, not str"),
    "api-from-the-future": (GOOD.replace("api = 1", "api = 99"), "api 99 is not supported"),
    "kind-unknown": (GOOD.replace('kind = "text"', 'kind = "video"'), "kind 'video' must be"),
    "unknown-top-key": (GOOD + 'colour = "red"\n', "colour: unknown key"),
    "unknown-param-key": (GOOD + '\n[[params]]\nname = "x"\ntype = "int"\ndefault = 1\nmaxx = 3\n',
                          "params[3].maxx: unknown key"),
    "control-good": (GOOD, ""),  # the same zoo, a manifest with nothing wrong: it loads
    "param-default-wrong-type": (GOOD.replace("default = 3", 'default = "three"'),
                                 "default: repeat: 'three' is not a valid int"),
    "param-default-out-of-range": (GOOD.replace("default = 3", "default = 99"),
                                   "default: repeat: 99 is above the maximum 50"),
    "param-type-unknown": (GOOD.replace('type = "text"', 'type = "colour"'),
                           "type 'colour' must be one of"),
    "params-not-a-list": ('params = "many"\n' + GOOD.split("[[params]]")[0],
                          "params must be list, not str"),
    "model-file-absolute": (GOOD + f'\n[[models]]\nid = "m"\nfile = "/etc/passwd.onnx"\n'
                            f'sha256 = "{SHA}"\n', "must be a path inside the plugin's folder"),
    "model-file-climbs": (GOOD + f'\n[[models]]\nid = "m"\nfile = "../../x/model.onnx"\n'
                          f'sha256 = "{SHA}"\n', "must be a path inside the plugin's folder"),
    "model-file-pickle": (GOOD + f'\n[[models]]\nid = "m"\nfile = "model.pt"\nsha256 = "{SHA}"\n',
                          "only .onnx models are loaded"),
    "model-sha-not-hex": (GOOD + '\n[[models]]\nid = "m"\nfile = "m.onnx"\nsha256 = "abc"\n',
                          "sha256 must be 64 hex digits"),
    "model-unknown-key": (GOOD + f'\n[[models]]\nid = "m"\nfile = "m.onnx"\nsha256 = "{SHA}"\n'
                          'weights = "x"\n', "models[0].weights: unknown key"),
}  # fmt: skip

MARKER = "open(__file__ + '.imported', 'w').close()\n"
COMPUTE = MARKER + "from gdl_studio.core.results import Result\n"


@pytest.fixture
def zoo(tmp_path: Path, plugin_root: Path) -> tuple[Path, Studio]:
    """The fixture plugins plus one folder per bad manifest, import failure and runtime failure."""
    root = tmp_path / "zoo"
    for folder, (text, _) in BAD_MANIFESTS.items():
        d = root / folder
        d.mkdir(parents=True)
        data = text if isinstance(text, bytes) else text.replace("PID", folder).encode()
        (d / "plugin.toml").write_bytes(data)
        (d / "compute.py").write_text(COMPUTE + "def run(params, ctx, state):\n    pass\n")
    for folder, (code, _) in IMPORT_FAILURES.items():
        write_plugin(root, folder, GOOD.replace("PID", folder), {"compute.py": MARKER + code})
    for folder, body in RUN_FAILURES.items():
        code = COMPUTE + "import sys\ndef run(params, ctx, state):\n" + body
        write_plugin(root, folder, GOOD.replace("PID", folder), {"compute.py": code})
    studio = Studio.create(include_builtin=False, include_entry_points=False,
                           extra_folders=[plugin_root, root])  # fmt: skip
    return root, studio


@pytest.mark.parametrize("folder", sorted(BAD_MANIFESTS))
def test_bad_manifest_is_listed_with_its_error(zoo: tuple[Path, Studio], folder: str) -> None:
    root, studio = zoo
    _, message = BAD_MANIFESTS[folder]
    rec = next(r for r in studio.registry if r.folder.name == folder)
    if not message:  # the control: a manifest that only looks odd loads
        assert rec.ok, rec.state
        return
    assert rec.state.startswith("bad manifest: "), rec.state
    assert message in rec.state and str(root / folder / "plugin.toml") in rec.state
    assert "\n" not in rec.state
    with pytest.raises(JobError, match=r"is not usable: bad manifest"):
        prepare_job(studio, rec.id)
    assert not (root / folder / "compute.py.imported").exists()  # its code never ran


IMPORT_FAILURES = {  # folder -> (compute.py, the exception the listed error names)
    "syntax-error": ("def run(params, ctx, state)\n    pass\n", "SyntaxError"),
    "missing-module": ("import gdl_no_such_module\n", "ModuleNotFoundError"),
    "raises-on-import": ("1 / 0\n", "ZeroDivisionError"),
    "exits-on-import": ("import sys\nsys.exit(3)\n", "SystemExit"),
    "no-run-function": ("def walk(params, ctx, state):\n    pass\n", "AttributeError"),
}

RUN_FAILURES = {  # folder -> body of run(); each must fail as one PluginRunError line
    "raises": "    raise RuntimeError('boom')\n",
    "raises-after-previews": (
        "    from gdl_studio.core.results import Preview\n"
        "    for i in range(3):\n        yield Preview('text', text=str(i))\n"
        "    raise ValueError('broke at step 3')\n"
    ),
    "exits-while-running": "    sys.exit(4)\n",
    "recurses-forever": "    return run(params, ctx, state)\n",
    "bad-result-type": "    return Result.of_text(None).text.upper()\n",
}
RUN_ERRORS = {"raises": "RuntimeError: boom",
              "raises-after-previews": "ValueError: broke at step 3",
              "exits-while-running": "SystemExit: 4", "recurses-forever": "RecursionError",
              "bad-result-type": "AttributeError"}  # fmt: skip


@pytest.mark.parametrize("folder", sorted(IMPORT_FAILURES))
def test_import_failure_is_reported_and_others_run(zoo: tuple[Path, Studio], folder: str) -> None:
    _, studio = zoo
    rec = studio.registry.get(folder)
    assert rec.ok  # the manifest is fine: the code is imported only when first used
    with pytest.raises(StudioError, match=rf"plugin '{folder}': import failed: "
                                          rf"{IMPORT_FAILURES[folder][1]}"):  # fmt: skip
        run_job(prepare_job(studio, folder))
    assert rec.state.startswith(f"import failed: {IMPORT_FAILURES[folder][1]}")
    assert run_job(prepare_job(studio, "echo", params={"repeat": 1})).result.text == "hello "


@pytest.mark.parametrize("folder", sorted(RUN_ERRORS))
def test_plugin_raising_during_run_is_one_error(zoo: tuple[Path, Studio], folder: str) -> None:
    _, studio = zoo
    with pytest.raises(PluginRunError) as info:
        run_job(prepare_job(studio, folder))
    text = str(info.value)
    assert text.startswith(f"plugin '{folder}' failed: ") and RUN_ERRORS[folder] in text
    assert info.value.__cause__ is not None  # the traceback is kept for the plugin's author
    assert studio.history.entries() == []
    assert run_job(prepare_job(studio, "tinygen", params={"seed": 5})).result.kind == "image"


@pytest.mark.parametrize("folder", ["raises", "exits-while-running", "exits-on-import",
                                    "syntax-error"])  # fmt: skip
def test_cli_reports_a_broken_plugin_in_one_line(
    zoo: tuple[Path, Studio],
    plugin_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    folder: str,
) -> None:
    root, _ = zoo
    out = tmp_path / "o.txt"
    code = main(["--plugin-dir", str(root), "run", folder, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("gdl-studio: error: plugin ") and folder in err[0]
    assert not out.exists()
    others = ["--plugin-dir", str(root), "--plugin-dir", str(plugin_root)]
    assert main([*others, "run", "echo", "--out", str(out), "-q"]) == 0


# -- random parameter values --------------------------------------------------------------------
def random_value(
    spec: ParamSpec, rng: random.Random, files: dict[str, Path], valid: bool, wide: bool = False
) -> Any:
    """A value a user, a script or a corrupted settings file might give.  With ``valid`` it is
    one the spec allows (and a run must then give a result); otherwise often not.  Numbers are
    drawn near the minimum unless ``wide`` (1000 steps of a batch of 16 is slow, not wrong)."""
    junk = ["", " ", "abc", "nan", "inf", "-inf", "1e309", "0x1f", "３", "None", "\x00", "🎲",
            "-1", "1.5", "99999999999999999999", "true", [], {"a": 1}, None]  # fmt: skip
    if not valid and rng.random() < 0.35:
        return rng.choice(junk)
    lo = spec.min if spec.min is not None else -1000
    hi = spec.max if spec.max is not None else 1000
    if spec.name == "delay":  # the fixture's sleep per step: keep the suite fast
        return 0.0 if valid else rng.choice([0, -1, 6.0, "slow"])
    if not wide:
        hi = min(hi, lo + 12)
    if spec.type == "int":
        good = [int(lo), int(hi), rng.randint(int(lo), int(hi)), str(rng.randint(int(lo), int(hi))),
                2.0]  # fmt: skip
        return rng.choice(good if valid else [*good, int(hi) + 1, int(lo) - 1, 2.5, True])
    if spec.type == "float":
        good = [lo, hi, rng.uniform(lo, hi), str(lo)]
        return rng.choice(good if valid else [*good, hi + 0.001, lo - 1, math.nan, math.inf])
    if spec.type == "choice":
        bad = ["not-a-choice", spec.choices[0].upper() + "!"]
        return rng.choice(list(spec.choices) if valid else [*spec.choices, *bad])
    if spec.type == "bool":
        good = [True, False, "yes", "off", 0, 1]
        return rng.choice(good if valid else [*good, 2, "maybe"])
    if spec.type == "seed":
        good = [0, 2**32 - 1, "random", rng.randint(0, 2**32 - 1)]
        return rng.choice(good if valid else [*good, 2**32, -2, "x"])
    if spec.type == "text":
        length = rng.choice([0, 1, 20, 300])
        return "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0x80, 0x2FFF)]))
                       for _ in range(length))  # fmt: skip
    if valid:  # a file parameter
        return str(files["ok.mid" if spec.type == "midi" else "ok.png"])
    return str(files[rng.choice(sorted(files))])


def sample_files(folder: Path) -> dict[str, Path]:
    from PIL import Image

    from tests.reliability.test_images import png_header_only
    from tests.reliability.test_midi import good

    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(folder / "ok.png")
    (folder / "ok.mid").write_bytes(good())
    (folder / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    (folder / "notes.txt").write_text("hello")
    (folder / "empty.mid").write_bytes(b"")
    files = {p.name: p for p in folder.iterdir()}
    return files | {"missing": folder / "absent.png", "dir": folder}


def run_bounded(
    studio: Studio, plugin: str, params: dict[str, Any], seconds: float, model: str | None = None
) -> str:
    """'result', 'refused: <message>' or 'cancelled' (a run longer than ``seconds``)."""
    try:
        job = prepare_job(studio, plugin, model_id=model, params=params)
    except JobError as exc:
        assert "\n" not in str(exc) and str(exc), repr(exc)
        return f"refused: {exc}"
    state = TaskState()
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append(run_job(job, state))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    timer = threading.Timer(seconds, state.cancel)
    timer.start()
    worker.join(seconds + 30)
    timer.cancel()
    assert outcome, f"{plugin} {params} ignored cancel for 30 s"
    got = outcome[0]
    if isinstance(got, Cancelled):
        return "cancelled"
    if isinstance(got, StudioError):
        assert "\n" not in str(got), repr(got)
        return f"refused: {got}"
    if isinstance(got, BaseException):
        raise got
    kind = studio.registry.get(plugin).manifest.kind
    assert got.result.kind == kind
    for name, value in got.provenance.params.items():  # the values used are recorded
        assert name in job.params and value == job.params[name]
    return "result"


def fuzz(
    studio: Studio,
    plugin: str,
    cases: int,
    seed: int,
    files: dict[str, Path],
    wide: bool = False,
    model: str | None = None,
) -> list[str]:
    """Every other case uses only allowed values; outcomes of those are marked 'valid '."""
    rng = random.Random(seed)
    rec = studio.registry.get(plugin)
    specs = specs_for_model(rec.manifest.params, rec.manifest.model(model))
    outcomes = []
    for i in range(cases):
        valid = i % 2 == 0
        params = {s.name: random_value(s, rng, files, valid, wide)
                  for s in specs if rng.random() < 0.7}  # fmt: skip
        outcome = run_bounded(studio, plugin, params, seconds=20, model=model)
        outcomes.append(("valid " if valid else "") + outcome)
    return outcomes


@pytest.mark.parametrize("plugin", ["tinygen", "echo", "scale"])
def test_random_parameters_through_the_fixture_plugins(
    studio: Studio, tmp_path: Path, plugin: str
) -> None:
    check_fuzz(studio, plugin, tmp_path, cases=60, wide=False)


@pytest.mark.slow
@pytest.mark.parametrize("plugin", ["tinygen", "echo", "scale"])
def test_many_random_parameters_over_whole_ranges(
    studio: Studio, tmp_path: Path, plugin: str
) -> None:
    check_fuzz(studio, plugin, tmp_path, cases=400, wide=True)


def check_fuzz(studio: Studio, plugin: str, tmp_path: Path, cases: int, wide: bool) -> None:
    seed = sum(map(ord, plugin)) + cases
    files = sample_files(tmp_path / "files")
    outcomes = fuzz(studio, plugin, cases=cases, seed=seed, files=files, wide=wide)
    assert [o for o in outcomes if o.startswith("valid ")] == ["valid result"] * (cases // 2)
    assert any(o.startswith("refused: ") for o in outcomes)


def usable_builtins() -> list[str]:
    studio = Studio.create(include_entry_points=False)
    return sorted(r.id for r in studio.registry if r.ok and r.source == "builtin")


@pytest.mark.parametrize("plugin", usable_builtins())
def test_random_parameters_through_every_builtin_plugin(tmp_path: Path, plugin: str) -> None:
    """Every shipped plugin, as models land: a result, a one-line refusal or, for a run that
    would take long, a clean cancel."""
    studio = Studio.create(include_entry_points=False)
    fuzz(studio, plugin, cases=8, seed=1, files=sample_files(tmp_path / "files"))


def other_builtin_models() -> list[tuple[str, str]]:
    studio = Studio.create(include_entry_points=False)
    return sorted(
        (r.id, m.id)
        for r in studio.registry
        if r.ok and r.source == "builtin" and r.manifest is not None
        for m in r.manifest.models
        if m.id != r.manifest.model(None).id
    )


@pytest.mark.parametrize(("plugin", "model"), other_builtin_models())
def test_random_parameters_through_every_other_shipped_model(
    tmp_path: Path, plugin: str, model: str
) -> None:
    """The models that are not their plugin's default (a style network of the project's, the
    classic mode, the cello model ...): the same three outcomes, a few cases each."""
    studio = Studio.create(include_entry_points=False)
    fuzz(studio, plugin, cases=4, seed=2, files=sample_files(tmp_path / "files"), model=model)


def test_random_parameters_through_the_cli(
    plugin_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(11)
    files = sample_files(tmp_path / "files")
    from gdl_studio.core.manifest import load_manifest

    specs = {p: load_manifest(plugin_root / p / "plugin.toml").params
             for p in ("tinygen", "echo", "scale")}  # fmt: skip
    ext = {"tinygen": ".png", "echo": ".txt", "scale": ".mid"}
    codes = []
    for i in range(90):
        plugin = rng.choice(sorted(specs))
        sets = []
        for spec in specs[plugin]:
            if rng.random() < 0.5:
                value = random_value(spec, rng, files, valid=i % 3 == 0)
                sets += ["--set", f"{spec.name}={value}"]
        if rng.random() < 0.2:
            sets += ["--set", "no_such_param=1"]
        out = tmp_path / f"out{i}{ext[plugin]}"
        code = main(["--plugin-dir", str(plugin_root), "run", plugin, "--out", str(out), "-q",
                     *sets])  # fmt: skip
        err = capsys.readouterr().err.strip()
        codes.append(code)
        if code == 0:
            assert err == "" and out.exists()
            assert read_provenance(out).plugin == plugin
        else:
            assert code == 1 and len(err.splitlines()) == 1, err
            assert err.startswith("gdl-studio: error: ") and not out.exists()
    assert 0 in codes and 1 in codes


# -- random decoder output ----------------------------------------------------------------------
def test_random_notes_always_make_a_midi_file_that_reads_back(tmp_path: Path) -> None:
    """What a music decoder turns random token ids into: pitches, velocities, programs and
    channels out of range, negative, huge or non-finite times.  The file can always be saved
    with its provenance and read back by the studio's own checked reader."""
    from gdl_studio.core.imageio import read_midi
    from gdl_studio.core.results import Provenance

    rng = random.Random(5)
    values = [-1e12, -5, -0.0, 0, 0.25, 3, 7199.0, 1e9, math.nan, math.inf, -math.inf]
    prov = Provenance("scale", "1", None, None, {}, 1, "CPU", "midi", "0", "0")
    for i in range(40):
        notes = [
            Note(rng.randint(-300, 300), rng.choice(values), rng.choice(values),
                 rng.randint(-300, 300), rng.randint(-5, 40), rng.randint(-300, 300))
            for _ in range(rng.randint(0, 60))
        ]  # fmt: skip
        midi = notes_to_midi(notes)
        path = tmp_path / f"n{i}.mid"
        save_result(Result.of_midi(midi), prov, path)
        back = read_midi(path)
        for msg in (m for t in back.tracks for m in t if not m.is_meta):
            assert 0 <= msg.channel <= 15
            assert all(0 <= b <= 127 for b in msg.bytes()[1:])
        finite = [n for n in notes if math.isfinite(n.start) and math.isfinite(n.end)]
        ons = [m for t in back.tracks for m in t if m.type == "note_on"]
        assert len(ons) == len(finite)
