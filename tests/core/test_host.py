"""The windowless studio: job validation, running, previews, provenance and determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gdl_studio import __version__
from gdl_studio.core.host import (
    JobError,
    JobOutcome,
    Studio,
    call_command,
    context_for,
    input_param_for,
    prepare_job,
    run_job,
)
from gdl_studio.core.jobs import Cancelled, TaskState
from gdl_studio.core.results import Preview, Result
from gdl_studio.core.runtime import ModelIntegrityError
from tests.fixtures.plugins import TEXT_MANIFEST, write_plugin


def pixels(result: Result) -> list[np.ndarray]:
    return [np.asarray(im) for im in result.images]


# -- prepare_job -------------------------------------------------------------------------------
def test_prepare_job_resolves_params(studio: Studio) -> None:
    job = prepare_job(studio, "tinygen", params={"seed": "12", "batch": "2", "crisp": "no"})
    assert job.params == {
        "seed": 12,
        "batch": 2,
        "steps": 3,
        "delay": 0.0,
        "style": "plain",
        "crisp": False,
        "source": None,
    }
    assert job.seed == 12
    assert job.context.model is not None and job.context.model.id == "tiny"


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"batch": 100}, "batch: 100 is above the maximum 16"),
        ({"batch": 0}, "batch: 0 is below the minimum 1"),
        ({"steps": "many"}, "steps: 'many' is not a valid int"),
        ({"style": "odd"}, "style: 'odd' is not one of plain, fancy"),
        ({"crisp": "perhaps"}, "crisp"),
        ({"delay": "nan"}, "not a finite number"),
        ({"seed": -7}, "seed"),
        ({"colour": "red"}, "unknown parameter 'colour'"),
    ],
)
def test_prepare_job_refuses_bad_params(studio: Studio, params: dict, match: str) -> None:
    with pytest.raises(JobError, match=match):
        prepare_job(studio, "tinygen", params=params)


def test_prepare_job_refuses_unusable_plugins(studio: Studio) -> None:
    with pytest.raises(JobError, match=r"no plugin 'nope'"):
        prepare_job(studio, "nope")
    with pytest.raises(JobError, match=r"'badmanifest' is not usable: bad manifest"):
        prepare_job(studio, "badmanifest")
    with pytest.raises(JobError, match=r"'offplugin' is not usable: disabled"):
        prepare_job(studio, "offplugin")
    with pytest.raises(JobError, match=r"no model 'huge' \(models: tiny\)"):
        prepare_job(studio, "tinygen", model_id="huge")


def test_prepare_job_checks_input_files(studio: Studio, tmp_path: Path) -> None:
    with pytest.raises(JobError, match=r"no such file"):
        prepare_job(studio, "tinygen", inputs=[tmp_path / "missing.png"])
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    with pytest.raises(JobError, match=r"junk.png: not an image in a supported format"):
        prepare_job(studio, "tinygen", inputs=[junk])
    with pytest.raises(JobError, match=r"junk.png"):
        prepare_job(studio, "tinygen", params={"source": str(junk)})
    doc = tmp_path / "doc.txt"
    doc.write_text("x")
    with pytest.raises(JobError, match=r"doc.txt: not an image or MIDI file"):
        prepare_job(studio, "tinygen", inputs=[doc])
    with pytest.raises(JobError, match=r"'echo' takes no image input"):
        prepare_job(studio, "echo", inputs=[junk])
    bad_mid = tmp_path / "bad.mid"
    bad_mid.write_bytes(b"nope nope nope")
    with pytest.raises(JobError, match=r"bad.mid: not a readable MIDI file"):
        prepare_job(studio, "scale", inputs=[bad_mid])


def test_prepare_job_accepts_good_input(studio: Studio, tmp_path: Path) -> None:
    img = tmp_path / "in.JPG"
    Image.new("RGB", (4, 4), "green").save(img, format="JPEG")
    job = prepare_job(studio, "tinygen", inputs=[img])
    assert job.params["source"] == str(img)
    assert input_param_for(studio.registry.get("tinygen").manifest, img) == "source"


# -- run_job -----------------------------------------------------------------------------------
def test_run_job_image_previews_progress_and_provenance(studio: Studio, plugin_root: Path) -> None:
    previews: list[Preview] = []
    progress: list[tuple[float, str]] = []
    state = TaskState(on_preview=previews.append, on_progress=lambda f, m: progress.append((f, m)))
    job = prepare_job(studio, "tinygen", params={"seed": 5, "steps": 4, "batch": 2})
    outcome = run_job(job, state)

    assert [p.kind for p in previews] == ["image"] * 3  # one per step but the last
    assert all(len(p.images) == 2 for p in previews)
    assert progress[0] == (0.0, "starting") and progress[-1] == (1.0, "done")
    assert (1.0, "step 4/4") in progress

    result = outcome.result
    assert result.kind == "image" and len(result.images) == 2
    assert all(im.size == (8, 8) and im.mode == "L" for im in result.images)
    assert result.extra == {"seeds": [5, 5]}

    p = outcome.provenance
    sha = hashlib.sha256((plugin_root / "tinygen" / "model.onnx").read_bytes()).hexdigest()
    assert (p.plugin, p.plugin_version, p.model, p.model_sha256) == (
        "tinygen",
        "1.2.3",
        "tiny",
        sha,
    )
    assert p.seed == 5 and p.params == job.params
    assert p.kind == "image" and p.app_version == __version__
    assert p.provider == "CPU: chosen with GDL_STUDIO_PROVIDERS=cpu"
    assert p.ort_version not in ("", "unknown")
    assert p.extra == {"seeds": [5, 5]}
    assert outcome.notices == []


def test_run_job_text_and_midi_kinds(studio: Studio) -> None:
    previews: list[Preview] = []
    out = run_job(
        prepare_job(studio, "echo", params={"prompt": "ab", "repeat": 3, "seed": 1}),
        TaskState(on_preview=previews.append),
    )
    assert out.result.kind == "text" and out.result.text == "ab ab ab "
    assert out.result.probs == [0.5] * 9
    assert [p.text for p in previews] == ["ab "] * 3
    assert out.provenance.model is None and out.provenance.model_sha256 is None
    assert out.provenance.provider == "none"  # it used no model
    assert out.provenance.seed == 1

    midi = run_job(prepare_job(studio, "scale", params={"root": 48}))
    assert midi.result.kind == "midi"
    notes = [m.note for m in midi.result.midi.tracks[0] if m.type == "note_on"]
    assert notes == [48, 50, 52, 53, 55, 57, 59, 60]
    assert 0 <= midi.provenance.seed <= 2**32 - 1  # drawn, and recorded


def test_seed_determinism(studio: Studio) -> None:
    def once(seed: int) -> list[np.ndarray]:
        return pixels(run_job(prepare_job(studio, "tinygen", params={"seed": seed})).result)

    a, b, c = once(7), once(7), once(8)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_unset_seed_is_drawn_and_reproduces(studio: Studio) -> None:
    first = run_job(prepare_job(studio, "tinygen"))
    seed = first.provenance.seed
    assert isinstance(seed, int)
    again = run_job(prepare_job(studio, "tinygen", params={"seed": seed}))
    np.testing.assert_array_equal(pixels(first.result)[0], pixels(again.result)[0])


def test_cancel_from_preview_stops_the_job(studio: Studio) -> None:
    seen: list[Preview] = []
    state: TaskState

    def on_preview(p: Preview) -> None:
        seen.append(p)
        state.cancel()

    state = TaskState(on_preview=on_preview)
    with pytest.raises(Cancelled):
        run_job(prepare_job(studio, "tinygen", params={"steps": 50}), state)
    assert len(seen) == 1
    assert state.fraction < 1.0


def test_tampered_model_refused_at_run(studio: Studio, plugin_root: Path) -> None:
    model = plugin_root / "tinygen" / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError):
        run_job(prepare_job(studio, "tinygen", params={"seed": 1}))


def odd_plugins(root: Path) -> None:
    write_plugin(
        root,
        "wrongkind",
        TEXT_MANIFEST.replace('id = "echo"', 'id = "wrongkind"'),
        {
            "compute.py": (
                "from gdl_studio.core.results import Result\n"
                "def run(params, ctx, state):\n"
                "    return Result.of_midi(None)\n"
            )
        },
    )
    write_plugin(
        root,
        "nothing",
        TEXT_MANIFEST.replace('id = "echo"', 'id = "nothing"'),
        {"compute.py": "def run(params, ctx, state):\n    yield 'not a result'\n"},
    )
    write_plugin(
        root,
        "badeval",
        TEXT_MANIFEST.replace('id = "echo"', 'id = "badeval"').replace(
            'run = "compute:run"', 'run = "compute:run"\neval = "compute:evaluate"'
        ),
        {
            "compute.py": (
                "def run(params, ctx, state):\n    return None\n"
                "def evaluate(ctx, **kw):\n    return [1, 2]\n"
            )
        },
    )


def test_a_result_yielded_on_cancel_is_kept(tmp_path: Path) -> None:
    """A plugin that catches the cancel and yields what it has done keeps it; one that
    yields nothing more is cancelled as before."""
    compute = (
        "from gdl_studio.core.jobs import Cancelled\n"
        "from gdl_studio.core.results import Preview, Result\n"
        "def run(params, ctx, state):\n"
        "    text = ''\n"
        "    try:\n"
        "        for i in range(100):\n"
        "            text += str(i % 10)\n"
        "            yield Preview('text', text=str(i % 10))\n"
        "    except Cancelled:\n"
        "        if params['prompt'] == 'keep':\n"
        "            yield Result.of_text(text, stopped='cancelled')\n"
        "        return\n"
        "    yield Result.of_text(text)\n"
    )
    write_plugin(tmp_path, "keeper", TEXT_MANIFEST.replace('id = "echo"', 'id = "keeper"'),
                 {"compute.py": compute})  # fmt: skip
    studio = Studio.create(include_builtin=False, include_entry_points=False,
                           extra_folders=[tmp_path])  # fmt: skip

    def cancel_at_third(keep: str) -> tuple[TaskState, JobOutcome]:
        seen: list[Preview] = []

        def on_preview(p: Preview) -> None:
            seen.append(p)
            if len(seen) == 3:
                state.cancel()

        state = TaskState(on_preview=on_preview)
        return state, run_job(prepare_job(studio, "keeper", params={"prompt": keep}), state)

    state, outcome = cancel_at_third("keep")
    assert state.cancelled
    assert outcome.result.text == "012"
    assert outcome.provenance.extra["stopped"] == "cancelled"
    with pytest.raises(Cancelled):
        cancel_at_third("drop")


def test_plugins_without_a_proper_result(tmp_path: Path) -> None:
    odd_plugins(tmp_path / "odd")
    studio = Studio.create(include_builtin=False, include_entry_points=False,
                           extra_folders=[tmp_path / "odd"])  # fmt: skip
    with pytest.raises(JobError, match=r"'wrongkind' returned midi, expected text"):
        run_job(prepare_job(studio, "wrongkind"))
    with pytest.raises(JobError, match=r"'nothing' finished without a result"):
        run_job(prepare_job(studio, "nothing"))
    with pytest.raises(JobError, match=r"'badeval' eval did not return a dict"):
        call_command(studio, "badeval", "eval", None)


def test_call_command_eval_and_bench(studio: Studio, tmp_path: Path) -> None:
    out = call_command(studio, "tinygen", "eval", None, data=tmp_path / "d")
    assert out["plugin"] == "tinygen" and out["model"] == "tiny"
    assert out["data"] == str(tmp_path / "d") and out["score"] == 1.0
    assert out["model_sha256"] == studio.registry.get("tinygen").manifest.model("tiny").sha256
    bench = call_command(studio, "tinygen", "bench", "tiny")
    assert bench["ort_ms"] >= 0
    assert bench["provider"] == "CPU: chosen with GDL_STUDIO_PROVIDERS=cpu"
    with pytest.raises(JobError, match=r"'echo' has no eval command"):
        call_command(studio, "echo", "eval", None)
    with pytest.raises(JobError, match=r"'scale' has no bench command"):
        call_command(studio, "scale", "bench", None)


def test_context_helpers(studio: Studio) -> None:
    ctx = context_for(studio, "tinygen", None)
    assert ctx.plugin_dir == studio.registry.get("tinygen").folder
    assert ctx.graph_path() == ctx.plugin_dir / "model.onnx"
    assert ctx.card() == {}
    assert ctx.provider == "none"
    s = ctx.session()
    assert ctx.session() is s
    assert ctx.provider.startswith("CPU")
    with pytest.raises(JobError, match=r"has no graph 'decoder'"):
        ctx.graph_path("decoder")
    echo = context_for(studio, "echo", None)
    with pytest.raises(JobError, match=r"'echo' has no model"):
        echo.session()
