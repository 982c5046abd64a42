"""The text plugin end to end with a tiny step graph built by onnx.helper (no torch, no shared
data): seeds, temperature, top-k / top-p, stopping, streaming, cancelling, comparing
temperatures, continuing, unknown seed characters and the evaluation's numbers."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from gdl_studio_plugins.text.corpus import (
    Vocabulary,
    eval_windows,
    read_text,
    window_arrays,
)
from gdl_studio_plugins.text.sampling import Sampler, ends_here

from gdl_studio.core.host import JobError, Studio, call_command, prepare_job, run_job
from gdl_studio.core.jobs import Cancelled, TaskState
from gdl_studio.core.results import Preview, read_provenance, save_result

ROOT = Path(__file__).resolve().parents[2]
CHARS = ["\n", " ", ".", "a", "b", "c", "d", "e"]  # lower case only: capitals get folded
HIDDEN = 8
# The character each one is most likely followed by: from "a", greedy text reads "bc. abc. a".
NEXT = {"\n": "a", " ": "a", ".": " ", "a": "b", "b": "c", "c": ".", "d": "e", "e": "\n"}
MARGIN = 3.0  # logit lead of that character: sampling at T = 1 still strays often


class Reference:
    """The tiny model in numpy: h' = tanh(E[t] + h W); logits = A[t] + h' U; c passes."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        v = len(CHARS)
        self.E = rng.normal(0, 0.8, (v, HIDDEN)).astype(np.float32)
        self.W = rng.normal(0, 0.4, (HIDDEN, HIDDEN)).astype(np.float32)
        self.U = rng.normal(0, 0.1, (HIDDEN, v)).astype(np.float32)
        self.A = np.zeros((v, v), np.float32)
        for a, b in NEXT.items():
            self.A[CHARS.index(a), CHARS.index(b)] = MARGIN

    def step(self, token: int, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = np.tanh(self.E[token] + h @ self.W)
        return (self.A[token] + h @ self.U).astype(np.float64), h

    def logp_along(self, text: str) -> list[np.ndarray]:
        """log-softmax after each character of ``text``."""
        h = np.zeros(HIDDEN, np.float32)
        out = []
        for ch in text:
            logits, h = self.step(CHARS.index(ch), h)
            z = logits - logits.max()
            out.append(z - np.log(np.exp(z).sum()))
        return out

    def greedy(self, seed: str, n: int) -> str:
        text = seed
        for _ in range(n):
            text += CHARS[int(np.argmax(self.logp_along(text)[-1]))]
        return text[len(seed) :]

    def nll(self, ids: np.ndarray) -> float:
        """Mean NLL of ids[1:], one sequential pass from the zero state."""
        logps = self.logp_along("".join(CHARS[i] for i in ids[:-1]))
        return -float(np.mean([lp[t] for lp, t in zip(logps, ids[1:], strict=True)]))


def step_onnx(path: Path, ref: Reference) -> str:
    """The step contract (token, h, c -> logits, h_out, c_out) around :class:`Reference`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    v = len(CHARS)
    nodes = [
        helper.make_node("Gather", ["E", "token"], ["e"], axis=0),
        helper.make_node("Gather", ["A", "token"], ["a"], axis=0),
        helper.make_node("Squeeze", ["h", "axis0"], ["h0"]),
        helper.make_node("MatMul", ["h0", "W"], ["hw"]),
        helper.make_node("Add", ["e", "hw"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["hn"]),
        helper.make_node("MatMul", ["hn", "U"], ["hu"]),
        helper.make_node("Add", ["a", "hu"], ["logits"]),
        helper.make_node("Unsqueeze", ["hn", "axis0"], ["h_out"]),
        helper.make_node("Identity", ["c"], ["c_out"]),
    ]
    state = [1, "batch", HIDDEN]
    graph = helper.make_graph(
        nodes,
        "step",
        [
            helper.make_tensor_value_info("token", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, state),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, state),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", v]),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, state),
            helper.make_tensor_value_info("c_out", TensorProto.FLOAT, state),
        ],
        [
            numpy_helper.from_array(ref.E, "E"),
            numpy_helper.from_array(ref.A, "A"),
            numpy_helper.from_array(ref.W, "W"),
            numpy_helper.from_array(ref.U, "U"),
            numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ref() -> Reference:
    return Reference()


@pytest.fixture
def corpus(tmp_path: Path, ref: Reference) -> Path:
    """3,000 characters sampled from the reference model: its 'training file'."""
    rng = np.random.default_rng(5)
    text, h = "a", np.zeros(HIDDEN, np.float32)
    logits, h = ref.step(CHARS.index("a"), h)
    while len(text) < 3000:
        p = np.exp(logits - logits.max())
        ch = CHARS[int(rng.choice(len(CHARS), p=p / p.sum()))]
        text += ch
        logits, h = ref.step(CHARS.index(ch), h)
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return path


def make_studio(tmp_path: Path, ref: Reference, corpus: Path, vocab: list[str] = CHARS) -> Studio:
    """The real plugin code and manifest, with the tiny model added as its default."""
    folder = tmp_path / "plugins" / "text"
    shutil.copytree(
        ROOT / "plugins" / "text", folder, ignore=shutil.ignore_patterns("train", "__pycache__")
    )
    sha = step_onnx(folder / "tiny.onnx", ref)
    card = {
        "vocabulary": vocab,
        "architecture": {"vocab_size": len(CHARS), "hidden": HIDDEN, "layers": 1},
        "data": {
            "path": str(corpus),
            "file": corpus.name,
            "encoding": "utf-8",
            "decode_errors": "strict",
            "sha256": hashlib.sha256(corpus.read_bytes()).hexdigest(),
        },
        "val_nll": 1.0,
    }
    (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")
    # The shipped models are the manifest's last tables: replaced by the tiny one.
    manifest = (folder / "plugin.toml").read_text(encoding="utf-8").split("[[models]]")[0]
    manifest += f"""
[[models]]
id = "tiny"
file = "tiny.onnx"
card = "card.json"
sha256 = "{sha}"
default = true
[models.inputs]
token = ["batch"]
h = [1, "batch", {HIDDEN}]
c = [1, "batch", {HIDDEN}]
[models.outputs]
logits = ["batch", {len(CHARS)}]
"""
    (folder / "plugin.toml").write_text(manifest, encoding="utf-8")
    studio = Studio.create(
        include_builtin=False, include_entry_points=False, extra_folders=[tmp_path / "plugins"]
    )
    assert studio.registry.get("text").ok, studio.registry.get("text").state
    return studio


@pytest.fixture
def studio(tmp_path: Path, ref: Reference, corpus: Path) -> Studio:
    return make_studio(tmp_path, ref, corpus)


def run(studio: Studio, state: TaskState | None = None, **params):
    return run_job(prepare_job(studio, "text", params=params), state)


# ------------------------------------------------------------------------------- sampling


def test_temperature_reweights_as_chollet_writes_it() -> None:
    logits = np.array([2.0, 1.0, 0.0, -1.0])
    p = np.exp(logits) / np.exp(logits).sum()
    for t in (0.2, 0.5, 1.0, 1.2):
        want = np.exp(np.log(p) / t)
        assert np.allclose(Sampler(t).distribution(logits), want / want.sum())
    assert Sampler(0.0).distribution(logits).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_top_k_and_top_p_keep_only_the_likeliest() -> None:
    logits = np.log(np.array([0.05, 0.4, 0.3, 0.15, 0.1]))
    k2 = Sampler(1.0, top_k=2).distribution(logits)
    assert np.count_nonzero(k2) == 2 and k2[1] > 0 and k2[2] > 0
    assert np.isclose(k2[1] / k2[2], 0.4 / 0.3)  # the kept ones keep their ratio
    # 0.4 + 0.3 = 0.7 < 0.75, so the nucleus also needs the 0.15 character.
    p75 = Sampler(1.0, top_p=0.75).distribution(logits)
    assert set(np.flatnonzero(p75)) == {1, 2, 3}
    assert set(np.flatnonzero(Sampler(1.0, top_p=0.05).distribution(logits))) == {1}
    rng = np.random.default_rng(0)
    draws = {Sampler(1.0, top_k=2).choose(logits, rng.random())[0] for _ in range(300)}
    assert draws == {1, 2}


def test_a_draw_follows_the_distribution_it_is_drawn_from() -> None:
    """choose() (the per-character fast path) maps evenly spread draws u onto each character
    in proportion to distribution() (the reference), for every kind of sampler."""
    logits = np.log(np.array([0.05, 0.4, 0.3, 0.15, 0.1])) + 3.0
    grid = (np.arange(20000) + 0.5) / 20000
    for sampler in (Sampler(1.0), Sampler(0.5), Sampler(1.3, top_k=3), Sampler(0.8, top_p=0.6)):
        counts = np.bincount([sampler.choose(logits, u)[0] for u in grid], minlength=5)
        assert np.allclose(counts / len(grid), sampler.distribution(logits), atol=1e-3), sampler
    i, p = Sampler(0.0).choose(logits, 0.999)
    assert i == 1 and np.isclose(p, 0.4)  # greedy ignores u; p is the model's own probability


def test_sentence_and_paragraph_ends() -> None:
    assert ends_here("It rained.", " ", "sentence")
    assert ends_here('He said "no!"', "\n", "sentence")
    assert not ends_here("It was 3.", "5", "sentence")  # no space after: not an end
    assert not ends_here("It rained", " ", "sentence")
    assert ends_here("First.\n", "\n", "paragraph")
    assert not ends_here("First.\n", "A", "paragraph")
    assert not ends_here("It rained.", " ", "length")


def test_vocabulary_maps_or_drops_unknown_characters() -> None:
    vocab = Vocabulary(["\n", " ", "'", "-", ".", "a", "c", "e", "f"])
    enc = vocab.encode("Café — ‘a’ €\r\n")
    assert enc.text == "cafe -- 'a' \n"
    assert enc.mapped == {"C": "c", "é": "e", "—": "--", "‘": "'", "’": "'", "\r\n": "\n"}
    assert enc.dropped == {"€": 1}
    assert vocab.decode(enc.ids) == enc.text
    assert "dropped 1 character" in enc.report()
    assert not vocab.encode("face.").changed


def test_eval_windows_cover_every_target_once() -> None:
    ids = np.arange(50)
    for streams, burn in ((1, 0), (4, 0), (4, 7), (60, 2)):
        x, y, mask = window_arrays(ids, eval_windows(50, streams, burn))
        assert sorted(y[mask > 0].tolist()) == list(range(1, 50))
        assert ((y - x)[mask > 0] == 1).all()  # each target follows its input


def test_read_text_errors_are_clear(tmp_path: Path) -> None:
    from gdl_studio_plugins.text.corpus import CorpusError

    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin.txt").write_bytes("naïve\n".encode("latin-1"))
    with pytest.raises(CorpusError, match="the file is empty"):
        read_text(tmp_path / "empty.txt")
    with pytest.raises(CorpusError, match=r"not utf-8 text \(byte 0xEF at offset 2, line 1\)"):
        read_text(tmp_path / "latin.txt")
    assert read_text(tmp_path / "latin.txt", "latin-1") == "naïve\n"
    assert read_text(tmp_path / "latin.txt", errors="replace") == "na\ufffdve\n"
    with pytest.raises(CorpusError, match="no such file"):
        read_text(tmp_path / "absent.txt")


# -------------------------------------------------------------------------------- the run


def test_the_same_seed_gives_the_same_text(studio: Studio) -> None:
    a = run(studio, seed=7, seed_text="ab", length=200, temperature=1.0)
    b = run(studio, seed=7, seed_text="ab", length=200, temperature=1.0)
    c = run(studio, seed=8, seed_text="ab", length=200, temperature=1.0)
    assert a.result.text == b.result.text and a.result.text.startswith("ab")
    assert len(a.result.text) == 202 and a.result.text != c.result.text
    assert a.provenance.seed == 7 and a.provenance.extra["generated_chars"] == 200
    greedy = run(studio, seed=7, seed_text="ab", length=200, temperature=0.0).result.text
    assert a.result.text != greedy  # T = 1 really samples


def test_temperature_zero_is_argmax(studio: Studio, ref: Reference) -> None:
    for seed in (1, 2):
        out = run(studio, seed=seed, seed_text="dea", length=40, temperature=0.0)
        assert out.result.text == "dea" + ref.greedy("dea", 40)
    assert "abc. abc." in out.result.text
    # top-k = 1 is argmax at any temperature.
    k1 = run(studio, seed=3, seed_text="dea", length=40, temperature=1.5, top_k=1)
    assert k1.result.text == out.result.text


def test_top_k_restricts_every_draw(studio: Studio, ref: Reference) -> None:
    def outside_top2(text: str) -> int:
        logps = ref.logp_along(text[:-1])
        top2 = [set(np.argsort(-lp, kind="stable")[:2]) for lp in logps]
        return sum(CHARS.index(ch) not in t for ch, t in zip(text[1:], top2, strict=True))

    kept = run(studio, seed=4, seed_text="a", length=300, temperature=2.0, top_k=2).result.text
    assert len(kept) == 301 and outside_top2(kept) == 0
    wide = run(studio, seed=4, seed_text="a", length=300, temperature=2.0).result.text
    assert outside_top2(wide) > 30  # without the filter, T = 2 strays often


def test_probabilities_are_the_models_own(studio: Studio, ref: Reference) -> None:
    out = run(studio, seed=5, seed_text="abc", length=60, temperature=1.0, top_k=3)
    text, probs = out.result.text, out.result.probs
    assert probs is not None and len(probs) == len(text)
    assert math.isnan(probs[0])  # nothing predicts the first character
    logps = ref.logp_along(text[:-1])
    want = [math.exp(lp[CHARS.index(ch)]) for lp, ch in zip(logps, text[1:], strict=True)]
    assert np.allclose(probs[1:], want, atol=1e-5)


def test_stop_at_end_of_sentence(studio: Studio) -> None:
    out = run(studio, seed=1, seed_text="da", length=500, temperature=0.0, stop="sentence")
    assert out.result.text == "dabc."
    assert out.provenance.extra["stopped"] == "sentence"
    full = run(studio, seed=1, seed_text="da", length=50, temperature=0.0, stop="length")
    assert len(full.result.text) == 52 and full.provenance.extra["stopped"] == "length"


def test_text_streams_in_chunks_that_add_up(studio: Studio) -> None:
    previews: list[Preview] = []
    state = TaskState(on_preview=previews.append)
    out = run(studio, state, seed=2, seed_text="abc", length=500, temperature=1.0)
    assert len(previews) >= 500 // 48
    assert "".join(p.text for p in previews) == out.result.text
    assert all(len(p.probs) == len(p.text) for p in previews)
    assert previews[0].text == "abc" and max(len(p.text) for p in previews[1:]) <= 48


def test_cancel_stops_a_long_text(studio: Studio) -> None:
    seen: list[Preview] = []
    state = TaskState()
    state._on_preview = lambda p: (seen.append(p), len(seen) == 3 and state.cancel())
    with pytest.raises(Cancelled):
        run(studio, state, seed=2, seed_text="a", length=20000, temperature=1.0)
    assert len(seen) == 3


def test_compare_temperatures_sections_match_single_runs(studio: Studio) -> None:
    out = run(studio, mode="compare temperatures", seed=9, seed_text="ab", length=60)
    text = out.result.text
    sections = out.provenance.extra["sections"]
    assert [s["temperature"] for s in sections] == [0.2, 0.5, 1.0, 1.2]
    for s in sections:
        assert f"── temperature {s['temperature']:g} ──\nab" in text
        single = run(studio, seed=9, seed_text="ab", length=60, temperature=s["temperature"])
        body = text[s["offset"] :][: 2 + s["generated_chars"]]
        assert body == single.result.text
    assert len(out.result.probs) == len(text)
    with pytest.raises(JobError, match="temperatures"):
        run(studio, mode="compare temperatures", temperatures="hot, cold")


def test_continue_keeps_the_existing_text_verbatim(studio: Studio) -> None:
    notices: list[str] = []
    state = TaskState(on_notice=notices.append)
    existing = "Cab’d bed.\n"
    out = run(studio, state, mode="continue", seed=3, seed_text=existing, length=30)
    assert out.result.text.startswith(existing) and len(out.result.text) == len(existing) + 30
    # The model read "cabd bed.\n": C folded, the apostrophe dropped; the user is told.
    assert notices and "'C'→'c'" in notices[0] and "dropped 1" in notices[0]
    assert out.provenance.extra["seed_changes"]["dropped"] == {"’": 1}
    typed = run(studio, seed=3, seed_text="cabd bed.\n", length=30)
    assert out.result.text[len(existing) :] == typed.result.text[len("cabd bed.\n") :]


def test_unknown_seed_characters_never_crash(studio: Studio) -> None:
    notices: list[str] = []
    out = run(
        studio,
        TaskState(on_notice=notices.append),
        seed=1,
        seed_text="€€ ABC ✓",
        length=10,
        temperature=0.0,
    )
    assert out.result.text.startswith(" abc ")  # what the model read, shown as such
    assert out.provenance.extra["seed_changes"]["dropped"] == {"€": 2, "✓": 1}
    assert "dropped 3" in notices[0]
    nothing = run(studio, seed=1, seed_text="€✓", length=10, temperature=0.0)
    assert len(nothing.result.text) == 10  # starts as after a line break


def test_random_line_from_a_corpus_file(studio: Studio, tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    lines.write_text("abc.\n\nbad.\ncab.\n", encoding="utf-8")
    a = run(studio, seed_source="random line", corpus=str(lines), seed=11, length=5)
    b = run(studio, seed_source="random line", corpus=str(lines), seed=11, length=5)
    assert a.result.text == b.result.text
    line = a.provenance.extra["seed_line"]
    assert line["line"] in (1, 3, 4) and a.result.text.startswith(
        lines.read_text().splitlines()[line["line"] - 1] + "\n"
    )
    picked = {
        run(
            studio, seed_source="random line", corpus=str(lines), seed=s, length=1
        ).provenance.extra["seed_line"]["line"]
        for s in range(12)
    }
    assert picked == {1, 3, 4}  # blank lines are never picked
    # Empty: the model's training file (the card's path) is used.
    own = run(studio, seed_source="random line", seed=1, length=1)
    assert own.provenance.extra["seed_line"]["file"].endswith("corpus.txt")
    with pytest.raises(JobError, match="no such file"):
        run(studio, seed_source="random line", corpus=str(tmp_path / "nope.txt"))


def test_saved_text_keeps_its_settings(studio: Studio, tmp_path: Path) -> None:
    out = run(studio, seed=6, seed_text="ab", length=20, temperature=0.7)
    paths = save_result(out.result, out.provenance, tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == out.result.text
    prov = read_provenance(paths[0])
    assert prov.params["temperature"] == 0.7 and prov.seed == 6 and prov.plugin == "text"


def test_a_vocabulary_that_does_not_fit_is_refused(
    tmp_path: Path, ref: Reference, corpus: Path
) -> None:
    studio = make_studio(tmp_path, ref, corpus, vocab=CHARS[:-1])
    with pytest.raises(JobError, match="does not belong to this model"):
        run(studio, seed=1)


# ------------------------------------------------------------------------------ evaluation


def test_eval_equals_a_numpy_nll_on_the_validation_split(
    studio: Studio, ref: Reference, corpus: Path
) -> None:
    text = corpus.read_text(encoding="utf-8")
    ids = np.array([CHARS.index(c) for c in text])
    val = ids[int(len(ids) * 0.9) :]
    want = ref.nll(val)
    out = call_command(studio, "text", "eval", None)
    assert out["split"] == "val" and out["chars_scored"] == len(val) - 1 == 299
    assert out["val_nll"] == pytest.approx(want, abs=2e-5)
    assert out["bits_per_char"] == pytest.approx(want / math.log(2), abs=2e-5)
    # The same number from parallel rows when the warm-up reaches back to the start...
    rows = call_command(studio, "text", "eval", None, streams=4, burn=10_000)
    assert rows["val_nll"] == pytest.approx(want, abs=2e-5)
    # ...and a different one when it does not (the state matters in this model).
    cold = call_command(studio, "text", "eval", None, streams=30, burn=0)
    assert abs(cold["val_nll"] - want) > 1e-4
    # --data naming the training file itself: still its validation split.
    again = call_command(studio, "text", "eval", None, data=corpus)
    assert again["split"] == "val" and again["val_nll"] == out["val_nll"]


def test_eval_of_another_file_scores_all_of_it(
    studio: Studio, ref: Reference, tmp_path: Path
) -> None:
    other = tmp_path / "other.txt"
    other.write_text("Abc. bad cab.\nÉd dé.\n" * 4, encoding="utf-8")
    out = call_command(studio, "text", "eval", None, data=other)
    enc = Vocabulary(CHARS).encode(other.read_text(encoding="utf-8"))
    assert out["split"] == "whole" and out["chars_scored"] == len(enc.ids) - 1
    assert out["mapped_chars"] == {"A": "a", "É": "e", "é": "e"}
    assert out["val_nll"] == pytest.approx(ref.nll(enc.ids), abs=2e-5)


def test_eval_without_the_training_file_says_what_to_pass(studio: Studio, corpus: Path) -> None:
    corpus.write_text("changed", encoding="utf-8")  # no longer the file the card names
    with pytest.raises(JobError, match="pass --data"):
        call_command(studio, "text", "eval", None)
    latin = corpus.with_name("latin.txt")
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(JobError, match=r"not utf-8 text.*save it as UTF-8"):
        call_command(studio, "text", "eval", None, data=latin)


def test_the_shipped_manifest_is_valid() -> None:
    from gdl_studio.core.manifest import load_manifest
    from gdl_studio.core.params import resolve_params

    m = load_manifest(ROOT / "plugins" / "text" / "plugin.toml")
    assert m.kind == "text" and set(m.entry) == {"run", "eval", "bench"}
    params = resolve_params(m.params, {"seed": 1})
    assert params["temperature"] == 0.5 and params["mode"] == "generate"
    assert m.param("mode").choices == ("generate", "compare temperatures", "continue")
    assert m.param("stop").choices == ("length", "sentence", "paragraph")
