"""The music plugin end to end with a tiny prefill/step graph pair built by onnx.helper (no
torch, no shared data): a bigram model over the chorale tokens that honours the graph
contract, including the key/value cache.  Compose, continue, harmonise, streaming,
cancelling, the CLI, bad MIDI files, random token ids, and the evaluation's numbers."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import shutil
import time
from pathlib import Path

import mido
import numpy as np
import pytest
from gdl_studio_plugins.music.compute import generate, plan
from gdl_studio_plugins.music.sampling import Sampler
from gdl_studio_plugins.music.tokenizers import (
    BOS,
    BeatNote,
    ChoraleTokenizer,
    SoloTokenizer,
    beat_notes,
    write_midi,
)

from gdl_studio.core.host import JobError, Studio, call_command, prepare_job, run_job
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.results import Preview, read_provenance, save_result

ROOT = Path(__file__).resolve().parents[2]
TOK = ChoraleTokenizer()
V = len(TOK)
DH = 4
WINDOW = 64  # small, so that long pieces re-prefill their tail several times


class Bigram:
    """The tiny model in numpy: logits = A[previous token]; the cache holds E[token]."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.A = rng.normal(0, 1.5, (V, V)).astype(np.float32)
        self.E = rng.normal(0, 1, (V, DH)).astype(np.float32)

    def logp(self, prev: int) -> np.ndarray:
        z = self.A[prev].astype(np.float64)
        z -= z.max()
        return z - np.log(np.exp(z).sum())

    def nll(self, ids: list[int]) -> float:
        seq = [BOS, *ids]
        return -sum(self.logp(a)[b] for a, b in itertools.pairwise(seq))

    def greedy(self, n: int, prev: int = BOS, start_phase: int = 0) -> list[int]:
        out = []
        for i in range(n):
            z = np.where(TOK.allowed(start_phase + i), self.A[prev], -np.inf)
            prev = int(np.argmax(z))
            out.append(prev)
        return out


def write_graphs(folder: Path, ref: Bigram) -> tuple[str, str]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def save(graph: onnx.GraphProto, path: Path) -> str:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        return hashlib.sha256(path.read_bytes()).hexdigest()

    weights = [
        numpy_helper.from_array(ref.A, "A"),
        numpy_helper.from_array(ref.E, "E"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "ax12"),
    ]
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    prefill = helper.make_graph(
        [
            helper.make_node("Gather", ["A", "tokens"], ["logits"], axis=0),
            helper.make_node("Gather", ["E", "tokens"], ["e"], axis=0),
            helper.make_node("Unsqueeze", ["e", "ax1"], ["key_0"]),
            helper.make_node("Identity", ["key_0"], ["value_0"]),
        ],
        "prefill",
        [helper.make_tensor_value_info("tokens", i64, ["batch", "time"])],
        [
            helper.make_tensor_value_info("logits", f, ["batch", "time", V]),
            helper.make_tensor_value_info("key_0", f, ["batch", 1, "time", DH]),
            helper.make_tensor_value_info("value_0", f, ["batch", 1, "time", DH]),
        ],
        weights,
    )
    step = helper.make_graph(
        [
            helper.make_node("Gather", ["A", "token"], ["logits"], axis=0),
            helper.make_node("Gather", ["E", "token"], ["e"], axis=0),
            # The new token's key and value only: the plugin appends them to its cache.
            helper.make_node("Unsqueeze", ["e", "ax12"], ["key_0"]),
            helper.make_node("Identity", ["key_0"], ["value_0"]),
        ],
        "step",
        [
            helper.make_tensor_value_info("token", i64, ["batch"]),
            helper.make_tensor_value_info("past_key_0", f, ["batch", 1, "past", DH]),
            helper.make_tensor_value_info("past_value_0", f, ["batch", 1, "past", DH]),
        ],
        [
            helper.make_tensor_value_info("logits", f, ["batch", V]),
            helper.make_tensor_value_info("key_0", f, ["batch", 1, 1, DH]),
            helper.make_tensor_value_info("value_0", f, ["batch", 1, 1, DH]),
        ],
        weights,
    )
    return save(prefill, folder / "prefill.onnx"), save(step, folder / "step.onnx")


def synthetic_grid(steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grid = np.full((steps, 4), np.nan)
    for v, c in enumerate((72, 64, 57, 48)):
        s = 0
        while s < steps:
            hold = int(rng.integers(1, 6))
            grid[s : s + hold, v] = c + int(rng.integers(-5, 6))
            s += hold
    return grid


@pytest.fixture(scope="module")
def ref() -> Bigram:
    return Bigram()


def write_jsb_json(path: Path) -> Path:
    """A file shaped like Jsb16thSeparated.json (pitches per step, -1: silent) of synthetic
    chorales."""
    splits = {}
    for k, n in (("train", 3), ("valid", 4), ("test", 2)):
        grids = [synthetic_grid(16 + 8 * i, len(k) * 10 + i) for i in range(n)]
        splits[k] = [np.nan_to_num(g, nan=-1).astype(int).tolist() for g in grids]
    path.write_text(json.dumps(splits), encoding="utf-8")
    return path


@pytest.fixture
def jsb(tmp_path: Path) -> Path:
    return write_jsb_json(tmp_path / "chorales.json")


def make_studio(tmp_path: Path, ref: Bigram, jsb: Path, vocab_size: int = V) -> Studio:
    """The real plugin code and manifest, with the tiny model as its only model."""
    folder = tmp_path / "plugins" / "music"
    shutil.copytree(
        ROOT / "plugins" / "music", folder, ignore=shutil.ignore_patterns("train", "__pycache__")
    )
    pre_sha, step_sha = write_graphs(folder, ref)
    tok = ChoraleTokenizer(28, 28 + vocab_size - 3)
    card = {
        "tokenizer": tok.config(),
        "window": WINDOW,
        "architecture": {"vocab_size": V, "layers": 1, "kv_heads": 1},
        "data": {"path": str(jsb.with_suffix(".npz")), "file": "chorales.npz"},
        "val_nll": 1.0,
    }
    (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")
    manifest = (folder / "plugin.toml").read_text(encoding="utf-8").split("[[models]]")[0]
    manifest += f"""
[[models]]
id = "tiny"
card = "card.json"
default = true
[models.graphs.prefill]
file = "prefill.onnx"
sha256 = "{pre_sha}"
[models.graphs.prefill.inputs]
tokens = ["batch", "time"]
[models.graphs.step]
file = "step.onnx"
sha256 = "{step_sha}"
[models.graphs.step.inputs]
token = ["batch"]
past_key_0 = ["batch", 1, "past", {DH}]
past_value_0 = ["batch", 1, "past", {DH}]
"""
    (folder / "plugin.toml").write_text(manifest, encoding="utf-8")
    studio = Studio.create(
        include_builtin=False, include_entry_points=False, extra_folders=[tmp_path / "plugins"]
    )
    assert studio.registry.get("music").ok, studio.registry.get("music").state
    return studio


@pytest.fixture
def studio(tmp_path: Path, ref: Bigram, jsb: Path) -> Studio:
    return make_studio(tmp_path, ref, jsb)


def run(studio: Studio, state: TaskState | None = None, inputs=(), **params):
    return run_job(prepare_job(studio, "music", params=params, inputs=inputs), state)


def tokens_of(midi: mido.MidiFile) -> list[int]:
    return TOK.encode_midi(midi)


def melody_file(path: Path) -> Path:
    notes = [BeatNote(p, i * 0.5, i * 0.5 + 0.5) for i, p in enumerate([67, 69, 71, 72, 74, 72])]
    notes.append(BeatNote(71, 3.0, 4.0))
    write_midi(notes, ["Melody"]).save(str(path))
    return path


# --------------------------------------------------------------------------------- sampler


def test_sampler_masks_then_filters() -> None:
    logits = np.log(np.array([[0.05, 0.4, 0.3, 0.15, 0.1]]))
    allowed = np.array([True, False, True, True, True])
    p = Sampler(1.0).distribution(logits, allowed)[0]
    assert p[1] == 0 and np.isclose(p[2] / p[3], 2.0)
    assert set(np.flatnonzero(Sampler(1.0, top_k=2).distribution(logits, allowed)[0])) == {2, 3}
    assert set(np.flatnonzero(Sampler(1.0, top_p=0.5).distribution(logits)[0])) == {1, 2}
    assert Sampler(0.0).choose(logits, np.random.default_rng(0), allowed).tolist() == [2]
    # A mask that allows nothing, or logits that are not numbers, still give a token.
    nothing = np.zeros(5, bool)
    assert 0 <= Sampler(1.0).choose(logits, np.random.default_rng(0), nothing)[0] < 5
    weird = np.array([[np.nan, np.inf, -np.inf, 0.0, 1.0]])
    assert 0 <= Sampler(0.7).choose(weird, np.random.default_rng(0))[0] < 5


def test_the_cache_appends_in_place_and_grows() -> None:
    from gdl_studio_plugins.music.model import KVCache

    rng = np.random.default_rng(0)
    first = [rng.normal(size=(1, 1, 5, DH)).astype(np.float32) for _ in range(2)]
    cache = KVCache(first)
    added = []
    for _ in range(200):  # past the first buffer (64): it doubles, keeping what it holds
        new = [rng.normal(size=(1, 1, 1, DH)).astype(np.float32) for _ in range(2)]
        cache.append(new)
        added.append(new)
    want = [np.concatenate([first[i], *(a[i] for a in added)], axis=2) for i in range(2)]
    views = cache.views()
    assert cache.length == 205 and all(
        np.array_equal(v, w) for v, w in zip(views, want, strict=True)
    )
    # One row, one key/value head: the step graph reads the buffer itself, no copy.
    assert all(np.shares_memory(v, b) for v, b in zip(views, cache.buffers, strict=True))
    assert all(v.flags["C_CONTIGUOUS"] for v in views)
    two = KVCache([rng.normal(size=(2, 1, 3, DH)).astype(np.float32)])
    assert two.views()[0].flags["C_CONTIGUOUS"] and two.views()[0].shape == (2, 1, 3, DH)


# -------------------------------------------------------------------------------- the runs


def test_compose_is_the_models_greedy_piece_at_temperature_zero(
    studio: Studio, ref: Bigram
) -> None:
    out = run(studio, seed=1, length=2, temperature=0.0)
    ids = tokens_of(out.result.midi)
    assert ids == ref.greedy(2 * 64)
    assert out.provenance.extra["generated_tokens"] == 128
    assert out.provenance.extra["grammar_errors"] == 0


def test_long_pieces_cross_the_window_and_stay_the_same(studio: Studio, ref: Bigram) -> None:
    out = run(studio, seed=1, length=6, temperature=0.0)  # 384 tokens through a 64 window
    assert tokens_of(out.result.midi) == ref.greedy(6 * 64)


def test_the_same_seed_gives_the_same_piece(studio: Studio) -> None:
    a = run(studio, seed=7, length=3, temperature=1.0, top_p=0.9)
    b = run(studio, seed=7, length=3, temperature=1.0, top_p=0.9)
    c = run(studio, seed=8, length=3, temperature=1.0, top_p=0.9)
    assert tokens_of(a.result.midi) == tokens_of(b.result.midi) != tokens_of(c.result.midi)
    assert a.provenance.seed == 7 and a.provenance.extra["grammar_errors"] == 0


def test_a_length_in_seconds_follows_the_tempo(studio: Studio) -> None:
    out = run(studio, seed=3, length=6, unit="seconds", tempo=120, temperature=1.0)
    # 6 s at 120 bpm = 12 beats = 48 grid steps of four tokens.
    assert out.provenance.extra["generated_tokens"] == 48 * 4
    assert out.result.midi.length <= 6.0 + 1e-6  # the file ends with the last note-off
    bars = run(studio, seed=3, length=3, unit="bars", tempo=120, temperature=1.0)
    assert tokens_of(bars.result.midi) == tokens_of(out.result.midi)  # 3 bars = 12 beats
    with pytest.raises(JobError, match="unit"):
        run(studio, seed=3, length=6, unit="minutes")
    # 5 s at 80 bpm = 6.67 beats: the piece ends with the whole step that crosses it.
    odd = run(studio, seed=3, length=5, unit="seconds", tempo=80, temperature=1.0)
    assert odd.provenance.extra["generated_tokens"] == 27 * 4


class UniformSolo:
    """Just enough of MusicModel for generate(): a solo-line tokenizer and flat logits."""

    def __init__(self) -> None:
        self.tokenizer = SoloTokenizer()
        self.window = 1 << 20
        self.flat = np.zeros(len(self.tokenizer), np.float32)

    def clip_ids(self, ids: np.ndarray) -> np.ndarray:
        return ids

    def prefill(self, ids: np.ndarray, state: object) -> tuple[np.ndarray, None]:
        return np.tile(self.flat, (1, ids.shape[1], 1)), None

    def step(self, token: np.ndarray, cache: object, state: object) -> tuple[np.ndarray, None]:
        return self.flat[None], None


@pytest.mark.parametrize("unit,length,beats", [("bars", 2, 8.0), ("seconds", 5, 7.5)])
def test_a_solo_line_stops_at_the_note_that_reaches_the_length(
    unit: str, length: int, beats: float
) -> None:
    model = UniformSolo()
    tok = model.tokenizer
    todo = plan({"mode": "compose", "length": length, "unit": unit, "tempo": 90}, tok)
    assert todo.beats == beats
    *_, ids = generate(model, [], todo.max_tokens, Sampler(1.0), 0, None, TaskState(), todo.beats)
    assert len(ids) % 2 == 0 and tok.grammar_errors(ids) == 0  # whole (pitch, duration) pairs
    units = [tok.id_units(t) or 0 for t in ids[1::2]]
    total = sum(units) / tok.UNITS_PER_BEAT
    assert total >= beats and total - units[-1] / tok.UNITS_PER_BEAT < beats  # the last crosses


def test_notes_stream_as_they_are_generated(studio: Studio) -> None:
    previews: list[Preview] = []
    out = run(studio, TaskState(on_preview=previews.append), seed=2, length=4, tempo=120)
    assert len(previews) == 4 and all(p.kind == "midi" for p in previews)
    counts = [len(p.notes) for p in previews]
    assert counts == sorted(counts) and counts[0] > 0
    # The last preview is the piece: seconds at 120 bpm are half its beats.
    final = TOK.decode_notes(tokens_of(out.result.midi))
    assert sorted((n[0], n[1]) for n in previews[-1].notes) == sorted(
        (n.pitch, n.start / 2) for n in final
    )


def test_cancel_keeps_the_piece_so_far(studio: Studio) -> None:
    state = TaskState()
    seen: list[Preview] = []
    state._on_preview = lambda p: (seen.append(p), len(seen) == 3 and state.cancel())
    out = run(studio, state, seed=2, length=64)
    assert out.provenance.extra["stopped"] == "cancelled"
    assert 2 * 64 <= out.provenance.extra["generated_tokens"] < 64 * 64


def test_continue_keeps_the_given_piece(studio: Studio, tmp_path: Path) -> None:
    grid = synthetic_grid(32, 3)
    given = TOK.encode_grid(grid)
    path = tmp_path / "given.mid"
    TOK.to_midi(given).save(str(path))
    out = run(studio, mode="continue", inputs=[path], seed=4, length=2)
    ids = tokens_of(out.result.midi)
    assert ids[: len(given)] == given and len(ids) == len(given) + 2 * 64
    assert out.provenance.extra["prompt_tokens"] == len(given)
    with pytest.raises(JobError, match="needs a MIDI file"):
        run(studio, mode="continue", seed=1)


def test_harmonise_fixes_the_soprano(studio: Studio, tmp_path: Path, ref: Bigram) -> None:
    path = melody_file(tmp_path / "melody.mid")
    melody = TOK.encode_melody(beat_notes(mido.MidiFile(path)))
    out = run(studio, mode="harmonise", inputs=[path], seed=5, temperature=1.0)
    ids = tokens_of(out.result.midi)
    assert ids[0::4] == melody and len(ids) == 4 * len(melody) == 4 * 16
    assert TOK.grammar_errors(ids) == 0
    grid = TOK.decode_grid(ids)
    assert not np.isnan(grid[:, 1:]).all()  # alto, tenor and bass were written
    # The soprano is what the model read before each alto: greedy altos follow it.
    greedy = tokens_of(run(studio, mode="harmonise", inputs=[path], temperature=0.0).result.midi)
    for i in range(1, len(greedy), 4):
        want = np.where(TOK.allowed(1), ref.A[greedy[i - 1]], -np.inf)
        assert greedy[i] == int(np.argmax(want))


def test_saved_midi_keeps_its_settings(studio: Studio, tmp_path: Path) -> None:
    out = run(studio, seed=6, length=1, temperature=0.8, program=19, tempo=66)
    paths = save_result(out.result, out.provenance, tmp_path / "piece.mid")
    prov = read_provenance(paths[0])
    assert prov.plugin == "music" and prov.seed == 6 and prov.params["temperature"] == 0.8
    midi = mido.MidiFile(paths[0])
    assert {m.program for t in midi.tracks for m in t if m.type == "program_change"} == {19}


def test_the_cli_run_writes_a_midi_file(studio: Studio, tmp_path: Path) -> None:
    from gdl_studio import cli

    out_path = tmp_path / "cli.mid"
    argv = ["run", "music", "--seed", "3", "--set", "length=1", "-q", "--out", str(out_path)]
    assert cli.cmd_run(studio, cli.build_parser().parse_args(argv)) == 0
    assert read_provenance(out_path).plugin == "music"
    assert len(tokens_of(mido.MidiFile(out_path))) == 64


def test_the_instrument_is_given_by_its_general_midi_name_or_number(
    studio: Studio, tmp_path: Path
) -> None:
    from gdl_studio import cli

    spec = studio.registry.get("music").manifest.param("program")
    assert spec.value_name(-1) == "the model's own" and spec.value_name(42) == "Cello"
    for given, program in (("church organ", 19), ("42", 42)):
        out_path = tmp_path / f"{program}.mid"
        argv = ["run", "music", "--seed", "3", "--set", "length=1", "--set",
                f"program={given}", "-q", "--out", str(out_path)]  # fmt: skip
        assert cli.cmd_run(studio, cli.build_parser().parse_args(argv)) == 0
        midi = mido.MidiFile(out_path)
        assert {m.program for t in midi.tracks for m in t if m.type == "program_change"} == {
            program
        }
        assert read_provenance(out_path).params["program"] == program  # the number is kept


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("text.mid", b"hello, not a midi file", "not a MIDI file"),
        ("trunc.mid", b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x10\x00\x00",
         "truncated"),
        ("varint.mid", b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x0a"
         + b"\xff" * 10, "variable-length"),
    ],
)  # fmt: skip
def test_malformed_midi_is_refused_fast_with_a_reason(
    studio: Studio, tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    t = time.perf_counter()
    with pytest.raises(JobError, match=message):
        run(studio, mode="continue", inputs=[path], seed=1)
    assert time.perf_counter() - t < 2.0


def test_data_bytes_above_127_are_clipped_not_fatal(studio: Studio, tmp_path: Path) -> None:
    path = tmp_path / "loud.mid"
    TOK.to_midi(TOK.encode_grid(synthetic_grid(8, 1))).save(str(path))
    data = bytearray(path.read_bytes())
    i = data.index(bytes([0x90]))  # the first note_on: velocity byte set to 200
    data[i + 2] = 200
    path.write_bytes(bytes(data))
    out = run(studio, mode="continue", inputs=[path], seed=1, length=1)
    assert out.provenance.extra["prompt_tokens"] == 32


def test_drum_only_and_empty_files_say_so(studio: Studio, tmp_path: Path) -> None:
    drums = mido.MidiFile()
    kick = [mido.Message("note_on", channel=9, note=36, velocity=100, time=0),
            mido.Message("note_off", channel=9, note=36, time=240)]  # fmt: skip
    drums.tracks.append(mido.MidiTrack(kick * 8))
    drums.save(str(tmp_path / "drums.mid"))
    with pytest.raises(JobError, match="only drums"):
        run(studio, mode="harmonise", inputs=[tmp_path / "drums.mid"], seed=1)
    write_midi([], ["Solo"]).save(str(tmp_path / "empty.mid"))
    with pytest.raises(JobError, match="no notes"):
        run(studio, mode="harmonise", inputs=[tmp_path / "empty.mid"], seed=1)


def test_random_token_ids_never_crash_the_decoder(studio: Studio) -> None:
    from gdl_studio_plugins.music.model import MusicModel, Stream

    from gdl_studio.core.host import context_for

    model = MusicModel.from_context(context_for(studio, "music", None))
    rng = np.random.default_rng(0)
    ids = rng.integers(-(10**9), 10**9, 300)
    stream = Stream(model, ids, None)  # out-of-range ids are read as rests
    for t in rng.integers(0, V, 100):
        stream.push(int(t))
    assert np.isfinite(stream.logits).all() and len(stream.ids) == 401
    logits, cache = model.prefill(rng.integers(0, V, (3, 50)))
    assert logits.shape == (3, 50, V)
    logits, cache = model.step(rng.integers(0, V, 3), cache)
    assert logits.shape == (3, V) and cache.length == 51


def test_a_card_that_does_not_fit_is_refused(tmp_path: Path, ref: Bigram, jsb: Path) -> None:
    studio = make_studio(tmp_path, ref, jsb, vocab_size=V - 1)
    with pytest.raises(JobError, match="does not belong to this model"):
        run(studio, seed=1)


# ------------------------------------------------------------------------------ evaluation


def test_eval_equals_a_numpy_nll_on_the_valid_split(studio: Studio, ref: Bigram, jsb: Path) -> None:
    # The card names the .npz the model was trained on; eval reads its JSON twin.
    valid = json.loads(jsb.read_text(encoding="utf-8"))["valid"]
    seqs = [TOK.encode_grid(np.where(np.array(g) < 0, np.nan, g)) for g in valid]
    want = sum(ref.nll(s) for s in seqs) / sum(len(s) for s in seqs)
    out = call_command(studio, "music", "eval", None, pieces=10, bars=1)
    assert out["val_nll"] == pytest.approx(want, abs=1e-4)
    assert out["tokens_scored"] == sum(len(s) for s in seqs) and out["pieces_scored"] == 4
    assert out["bits_per_token"] == pytest.approx(want / math.log(2), abs=1e-4)
    assert (
        out["data"] == str(jsb)
        and out["data_sha256"] == hashlib.sha256(jsb.read_bytes()).hexdigest()
    )
    assert 0 <= out["valid_midi_share"] <= 1 and out["sampled_pieces"] == 10
    # Unmasked samples of a random bigram break the voice ranges now and then.
    assert 0 < out["grammar_error_ratio"] < 1


def test_eval_without_the_data_says_what_to_pass(studio: Studio, jsb: Path) -> None:
    jsb.unlink()
    with pytest.raises(JobError, match="pass --data"):
        call_command(studio, "music", "eval", None, pieces=2, bars=1)
    jsb.write_text('{"train": [], "valid": [[[60, 55]]]}', encoding="utf-8")
    with pytest.raises(JobError, match=r"valid piece 0 is not a \[steps, 4\] grid"):
        call_command(studio, "music", "eval", None, data=jsb, pieces=2, bars=1)
    jsb.write_bytes(b"\x80not json")
    with pytest.raises(JobError, match=r"not a Jsb16thSeparated \.json"):
        call_command(studio, "music", "eval", None, data=jsb, pieces=2, bars=1)


def test_the_shipped_manifest_is_valid() -> None:
    from gdl_studio.core.manifest import load_manifest
    from gdl_studio.core.params import resolve_params

    m = load_manifest(ROOT / "plugins" / "music" / "plugin.toml")
    assert m.kind == "midi" and set(m.entry) == {"run", "eval", "bench"}
    params = resolve_params(m.params, {"seed": 1})
    assert params["mode"] == "compose" and params["length"] == 8 and params["program"] == -1
    assert m.param("mode").choices == ("compose", "continue", "harmonise")
    for model in m.models:
        assert set(model.graphs) == {"prefill", "step"}
