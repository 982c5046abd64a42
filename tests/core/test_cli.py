"""The command line: plugins, run, eval and bench, their errors, and the installed script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gdl_studio.__main__ import CLI_COMMANDS, first_command
from gdl_studio.cli import main, parse_sets
from gdl_studio.core.host import JobError
from gdl_studio.core.results import read_provenance

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".venv" / "bin" / "gdl-studio"


def cli(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--plugin-dir", str(root), *args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gdl-studio: error:")
    for needle in needles:
        assert needle in lines[0]


# -- plugins -----------------------------------------------------------------------------------
def test_plugins_json(capsys, plugin_root: Path) -> None:
    code, out, _ = cli(capsys, plugin_root, "plugins", "--json")
    assert code == 0
    rows = {r["id"]: r for r in json.loads(out)}
    assert {"tinygen", "echo", "scale", "broken", "badmanifest", "offplugin"} <= set(rows)
    tiny = rows["tinygen"]
    assert (tiny["kind"], tiny["version"], tiny["state"]) == ("image", "1.2.3", "ok")
    assert tiny["name"] == "Tiny generator" and tiny["source"] == "folder"
    assert tiny["path"] == str(plugin_root / "tinygen")
    assert [m["id"] for m in tiny["models"]] == ["tiny"]
    assert tiny["models"][0]["default"] is True
    assert len(tiny["models"][0]["sha256"]) == 64
    assert tiny["provider"] == "CPU: chosen with GDL_STUDIO_PROVIDERS=cpu"
    assert (rows["echo"]["kind"], rows["echo"]["version"]) == ("text", "0.1.0")
    assert rows["echo"]["models"] == [] and rows["echo"]["provider"] is None
    assert rows["scale"]["kind"] == "midi"
    assert rows["broken"]["state"] == "ok"  # not known to fail until it runs
    bad = rows["badmanifest"]
    assert bad["state"].startswith("bad manifest") and bad["kind"] is None
    assert bad["version"] is None and bad["models"] == []


def test_plugins_table(capsys, plugin_root: Path) -> None:
    code, out, _ = cli(capsys, plugin_root, "plugins")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("tinygen"))
    assert "image" in line and "1.2.3" in line and "models: tiny" in line


def test_no_plugins_safe_mode(capsys, plugin_root: Path) -> None:
    code = main(["--no-plugins", "--plugin-dir", str(plugin_root), "plugins", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out) == []
    main(["--no-plugins", "plugins"])
    assert "no plugins found" in capsys.readouterr().out


def test_plugin_dir_after_the_command(capsys, plugin_root: Path) -> None:
    """`gdl-studio plugins --json --plugin-dir DIR` (options after the command, as users and
    the docs write them) works the same as with the option first."""
    try:
        code = main(["plugins", "--json", "--plugin-dir", str(plugin_root)])
    except SystemExit as exc:  # argparse refusing the option
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "tinygen" in {r["id"] for r in json.loads(out)}


# -- run ---------------------------------------------------------------------------------------
def test_run_writes_png_with_provenance(capsys, plugin_root: Path, tmp_path: Path) -> None:
    out_a = tmp_path / "a" / "x.png"
    code, out, err = cli(capsys, plugin_root, "run", "tinygen", "--seed", "5", "--out", str(out_a))
    assert code == 0, err
    assert f"wrote {out_a}" in out and "seed 5" in out
    prov = read_provenance(out_a)
    assert (prov.plugin, prov.seed, prov.model, prov.kind) == ("tinygen", 5, "tiny", "image")
    assert prov.params["seed"] == 5 and prov.params["steps"] == 3
    with Image.open(out_a) as im:
        assert "Seed: 5" in im.info["parameters"]
        first = np.asarray(im)

    out_b = tmp_path / "y.png"
    assert cli(capsys, plugin_root, "run", "tinygen", "--seed", "5", "--out", str(out_b))[0] == 0
    with Image.open(out_b) as im:
        np.testing.assert_array_equal(np.asarray(im), first)
    out_c = tmp_path / "z.png"
    assert cli(capsys, plugin_root, "run", "tinygen", "--seed", "6", "--out", str(out_c))[0] == 0
    with Image.open(out_c) as im:
        assert not np.array_equal(np.asarray(im), first)


def test_run_with_sets_model_and_input(capsys, plugin_root: Path, tmp_path: Path) -> None:
    src = tmp_path / "src.png"
    Image.new("RGB", (4, 4), "red").save(src)
    out = tmp_path / "grid.png"
    code, _, err = cli(
        capsys, plugin_root, "run", "tinygen", "--model", "tiny", "--set", "batch=4",
        "--set", "style=fancy", "--set", "steps=1", "--input", str(src), "--out", str(out), "-q",
    )  # fmt: skip
    assert code == 0, err
    prov = read_provenance(out)
    assert prov.params["batch"] == 4 and prov.params["style"] == "fancy"
    assert prov.params["source"] == str(src)
    with Image.open(out) as im:
        assert im.size == (18, 18)  # a 2x2 grid


def test_run_text_and_midi(capsys, plugin_root: Path, tmp_path: Path) -> None:
    txt = tmp_path / "t.txt"
    code, _, err = cli(capsys, plugin_root, "run", "echo", "--set", "prompt=hi there",
                       "--set", "repeat=2", "--out", str(txt))  # fmt: skip
    assert code == 0, err
    assert txt.read_text() == "hi there hi there "
    assert read_provenance(txt).params["prompt"] == "hi there"
    assert (tmp_path / "t.txt.json").is_file()
    mid = tmp_path / "m.mid"
    code, _, err = cli(capsys, plugin_root, "run", "scale", "--seed", "3", "--out", str(mid))
    assert code == 0, err
    assert read_provenance(mid).seed == 3


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["run", "nope", "--out", "{out}.png"], ["no usable plugin 'nope'", "tinygen"]),
        (["run", "badmanifest", "--out", "{out}.txt"], ["'badmanifest'"]),
        (["run", "tinygen", "--set", "batch=999", "--out", "{out}.png"], ["maximum 16"]),
        (["run", "tinygen", "--set", "steps=abc", "--out", "{out}.png"], ["steps"]),
        (["run", "tinygen", "--set", "batch", "--out", "{out}.png"], ["expected NAME=VALUE"]),
        (["run", "tinygen", "--set", "=3", "--out", "{out}.png"], ["expected NAME=VALUE"]),
        (["run", "tinygen", "--set", "colour=red", "--out", "{out}.png"], ["'colour'"]),
        (["run", "tinygen", "--out", "{out}.jpg"], ["writes .png or .gif files"]),
        (["run", "echo", "--out", "{out}.png"], ["writes .txt files"]),
        (["run", "tinygen", "--input", "{tmp}/missing.png", "--out", "{out}.png"], ["no such"]),
        (["run", "tinygen", "--input", "{tmp}/junk.png", "--out", "{out}.png"], ["junk.png"]),
        (["run", "tinygen", "--input", "{tmp}/notes.txt", "--out", "{out}.png"], ["notes.txt"]),
        (["run", "tinygen", "--model", "huge", "--out", "{out}.png"], ["no model 'huge'"]),
        (["run", "tinygen", "--seed", "-3", "--out", "{out}.png"], ["seed"]),
    ],
)
def test_run_errors_write_nothing(
    capsys, plugin_root: Path, tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "junk.png").write_text("not an image")
    (work / "notes.txt").write_text("hello")
    outdir = tmp_path / "outdir"
    filled = [a.format(out=outdir / "result", tmp=work) for a in args]
    code, _, err = cli(capsys, plugin_root, *filled)
    assert_one_line_error(code, err, *needles)
    assert not outdir.exists()


def test_run_failing_plugin_is_an_error_not_a_traceback(
    capsys, plugin_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "b.txt"
    code, _, err = cli(capsys, plugin_root, "run", "broken", "--out", str(out))
    assert_one_line_error(code, err, "broken", "a_module_that_does_not_exist")
    assert not out.exists()


def test_run_tampered_model_is_an_error_not_a_traceback(
    capsys, plugin_root: Path, tmp_path: Path
) -> None:
    model = plugin_root / "tinygen" / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    out = tmp_path / "t.png"
    code, _, err = cli(capsys, plugin_root, "run", "tinygen", "--out", str(out))
    assert_one_line_error(code, err, "sha256")
    assert not out.exists()


def test_no_command(capsys) -> None:
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("gdl-studio: error: no command")


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert "GDL Studio" in capsys.readouterr().out


def test_parse_sets() -> None:
    assert parse_sets(["a=1", " b =x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(JobError):
        parse_sets(["novalue"])


# -- eval and bench ----------------------------------------------------------------------------
def test_eval_json(capsys, plugin_root: Path) -> None:
    code, out, err = cli(capsys, plugin_root, "eval", "tinygen", "--data", "X", "--json")
    assert code == 0, err
    data = json.loads(out)  # exactly one JSON document
    assert isinstance(data, dict)
    assert data["data"] == "X" and data["plugin"] == "tinygen" and data["model"] == "tiny"
    assert data["score"] == 1.0


def test_bench_json(capsys, plugin_root: Path) -> None:
    code, out, err = cli(capsys, plugin_root, "bench", "tinygen", "--model", "tiny", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data, dict)
    assert data["ort_ms"] >= 0 and data["provider"].startswith("CPU")


def test_eval_without_eval_command(capsys, plugin_root: Path) -> None:
    code, out, err = cli(capsys, plugin_root, "eval", "echo", "--json")
    assert_one_line_error(code, err, "'echo' has no eval command")
    assert out == ""
    code, _, err = cli(capsys, plugin_root, "bench", "nope", "--json")
    assert_one_line_error(code, err, "no plugin 'nope'")


# -- the entry point ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], None),
        (["gui"], "gui"),
        (["plugins", "--json"], "plugins"),
        (["--plugin-dir", "run", "bench"], "bench"),  # "run" is the option's value
        (["--plugin-dir=x", "eval"], "eval"),
        (["--no-plugins", "run", "tinygen"], "run"),
        (["--plugin-dir", "d"], None),
        (["-h"], None),
    ],
)
def test_first_command(args: list[str], expected: str | None) -> None:
    assert first_command(args) == expected


def test_cli_commands_match_the_parser() -> None:
    from gdl_studio.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) - {"gui"} == CLI_COMMANDS


def test_console_script(plugin_root: Path, studio_home: Path) -> None:
    assert SCRIPT.is_file()
    env = {**os.environ, "GDL_STUDIO_HOME": str(studio_home), "GDL_STUDIO_PROVIDERS": "cpu"}
    proc = subprocess.run(
        [str(SCRIPT), "--plugin-dir", str(plugin_root), "plugins", "--json"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ids = {r["id"] for r in json.loads(proc.stdout)}
    assert {"tinygen", "echo", "scale", "broken", "badmanifest", "offplugin"} <= ids


def test_main_dispatches_cli_without_qt(plugin_root: Path, studio_home: Path) -> None:
    code = (
        "import sys\n"
        "from gdl_studio.__main__ import main\n"
        f"rc = main(['--plugin-dir', {str(plugin_root)!r}, 'plugins', '--json'])\n"
        "assert rc == 0, rc\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'torch'))\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "GDL_STUDIO_HOME": str(studio_home)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
        timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "tinygen" in proc.stdout
