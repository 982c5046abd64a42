"""The music plugin's training code: the transformer and its cached graphs, the training CLI
(files, samples, exact resume, bad data, two-process DDP, the solo scheme), the ONNX export
(prefill + steps against the full forward in ONNX Runtime) and eval/run/bench on an exported
model.

Tiny models on a few synthetic chorales and generated MIDI files, one thread.  Skipped
without torch (the [train] extra)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mido
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from gdl_studio_plugins.music.tokenizers import (  # noqa: E402
    BeatNote,
    ChoraleTokenizer,
    GeneralTokenizer,
    SoloTokenizer,
    write_midi,
)
from gdl_studio_plugins.music.train import export, train  # noqa: E402
from gdl_studio_plugins.music.train.data import Batches, load_chorales  # noqa: E402
from gdl_studio_plugins.music.train.model import (  # noqa: E402
    MusicTransformer,
    StepGraph,
    cache_names,
    torch_model_from_onnx,
)

from .conftest import REPO, exit_code, load, run_python, torchrun_two, words  # noqa: E402

TINY = words("--d-model 16 --heads 2 --kv-heads 1 --ff 32 --layers 2 --batch 2 --max-len 64")
TINY += words("--warmup 2 --sample-bars 1 --threads 1 --lr 0.01")


def grid(steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = np.full((steps, 4), np.nan)
    for v, c in enumerate((72, 64, 57, 48)):
        s = 0
        while s < steps:
            hold = int(rng.integers(1, 5))
            g[s : s + hold, v] = c + int(rng.integers(-4, 5))
            s += hold
    return g


def write_npz(path: Path, train_n: int = 6, valid_n: int = 2, seed: int = 0) -> Path:
    """Synthetic chorales as Jsb16thSeparated.npz, with its JSON edition beside it (what the
    app's eval reads)."""
    splits, doc = {}, {}
    for k, n in (("train", train_n), ("valid", valid_n), ("test", 1)):
        arr = np.empty(n, dtype=object)
        for i in range(n):
            arr[i] = grid(12 + 3 * i, seed * 100 + len(k) * 10 + i)
        splits[k] = arr
        doc[k] = [np.nan_to_num(g, nan=-1).astype(int).tolist() for g in arr]
    np.savez(path, **splits)
    path.with_suffix(".json").write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    return write_npz(tmp_path / "chorales.npz")


def train_main(argv: list[str]) -> int:
    return exit_code(train.main, argv)


# --------------------------------------------------------------------------------- model


def test_cached_steps_are_the_full_forward() -> None:
    torch.manual_seed(0)
    model = MusicTransformer(20, period=4, d_model=24, layers=3, heads=4, kv_heads=2, ff=40)
    model.eval()
    ids = torch.randint(0, 20, (2, 23))
    with torch.no_grad():
        full = model(ids)
        logits, cache = model.extend(ids[:, :9], None)
        assert torch.allclose(logits, full[:, :9], atol=1e-5)
        flat = [t for kv in cache for t in kv]
        for t in range(9, 23):
            out, *new = StepGraph(model)(ids[:, t], *flat)
            assert torch.allclose(out, full[:, t], atol=1e-5)
            assert new[0].shape == (2, 2, 1, 6)  # the new token's key: [batch, kv, 1, dh]
            flat = [torch.cat([c, n], dim=2) for c, n in zip(flat, new, strict=True)]


def test_positions_are_relative_and_phases_repeat() -> None:
    """Rotary positions: shifting a whole sequence by a multiple of the period (the phase
    embedding's cycle) changes nothing, so a crop is scored as the same tokens in place."""
    torch.manual_seed(1)
    model = MusicTransformer(20, period=4, d_model=16, layers=2, heads=2, kv_heads=1, ff=32)
    model.eval()
    ids = torch.randint(0, 20, (1, 17))
    with torch.no_grad():
        assert torch.allclose(model(ids, start=0), model(ids, start=8), atol=1e-5)
        assert not torch.allclose(model(ids, start=0), model(ids, start=1), atol=1e-3)


def test_batches_transpose_within_range_and_resume_identically(npz: Path) -> None:
    data = load_chorales(npz)
    tok = data.tokenizer
    b = Batches(data.train, batch=2, max_len=32, transpose=6, seed=3)
    x1, y1 = b.get(1, 2)
    x2, y2 = Batches(data.train, batch=2, max_len=32, transpose=6, seed=3).get(1, 2)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape[1] <= 32 and (x1[:, 1:] == y1[:, :-1])[y1[:, :-1] != -100].all()
    rows = [r[r != -100] for r in y1]
    assert all(tok.grammar_errors(r.tolist()) == 0 for r in rows if x1[0, 0] == 0)
    shifted = {int(b.get(e, 0)[0][0, 1]) for e in range(12)}
    assert len(shifted) > 1  # the same piece comes transposed differently in other epochs


# ------------------------------------------------------------------------------ training


def test_training_writes_its_files(npz: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["--data", str(npz), "--out", str(out), "--steps", "5", "--log-every", "2", *TINY]
    assert train_main(argv) == 0
    said = capsys.readouterr().out
    assert "6 train / 2 validation pieces" in said and "3 steps per epoch" in said
    assert "val_nll" in said and "done: step 5/5" in said
    ck = load(out / "checkpoint.pt")
    assert ck["step"] == 5 and ck["config"]["command"].endswith(" ".join(argv))
    assert ck["config"]["tokenizer"] == ChoraleTokenizer().config()
    assert ck["config"]["architecture"]["period"] == 4
    assert [v["step"] for v in ck["val_history"]] == [3, 5]
    samples = sorted((out / "samples").iterdir())
    assert [p.name for p in samples] == ["step_0000003.mid", "step_0000005.mid"]
    sample = mido.MidiFile(samples[-1])
    assert ChoraleTokenizer().grammar_errors(ChoraleTokenizer().encode_midi(sample)) == 0
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,train_nll,val_nll,lr,grad_norm,tokens_per_s"
    assert ck["val_history"][-1]["val_nll"] < np.log(len(ChoraleTokenizer()))
    assert train_main(argv) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_resume_continues_exactly(npz: Path, tmp_path: Path, capsys) -> None:
    common = ["--data", str(npz), "--steps", "7", *TINY]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train_main([*common, "--out", str(whole)]) == 0
    assert train_main([*common, "--out", str(split), "--stop-after", "2"]) == 0
    assert "stopped at step 2 of 7" in capsys.readouterr().out
    assert train_main(["--out", str(split), "--resume"]) == 0
    a, b = load(whole / "checkpoint.pt"), load(split / "checkpoint.pt")
    assert b["step"] == 7 and "--resume" in b["commands"][1]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), f"{key} differs after resuming"
    assert [v["val_nll"] for v in a["val_history"]] == [v["val_nll"] for v in b["val_history"]]
    assert train_main(["--out", str(split), "--resume", "--steps", "9", "--d-model", "32"]) == 2
    assert "--d-model" in capsys.readouterr().err


def test_bf16_autocast_trains_like_fp32_and_keeps_float32_weights(
    npz: Path, tmp_path: Path
) -> None:
    common = ["--data", str(npz), "--steps", "3", "--dropout", "0", "--log-every", "1", *TINY]
    assert train_main([*common, "--out", str(tmp_path / "fp32")]) == 0
    assert train_main([*common, "--out", str(tmp_path / "bf16"), "--precision", "bf16"]) == 0
    a, b = load(tmp_path / "fp32" / "checkpoint.pt"), load(tmp_path / "bf16" / "checkpoint.pt")
    first = [
        float((run / "log.csv").read_text().splitlines()[1].split(",")[2])
        for run in (tmp_path / "fp32", tmp_path / "bf16")
    ]
    assert first[1] == pytest.approx(first[0], rel=0.02)  # the same loss, rounded differently
    assert all(v.dtype == torch.float32 for v in b["model"].values() if v.is_floating_point())
    assert any(not torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # it did run bf16
    # A run option: a resumed run may change it.
    assert train_main(["--out", str(tmp_path / "bf16"), "--resume", "--steps", "4"]) == 0


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > pwned.txt",))


def test_an_npz_whose_pickle_would_run_code_is_refused(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    evil = np.empty(1, dtype=object)
    evil[0] = _RunsCode()
    np.savez(tmp_path / "evil.npz", train=evil, valid=evil)
    assert train_main(["--data", str(tmp_path / "evil.npz"), "--out", "o", *TINY]) == 2
    assert "names posix.system, not only numpy arrays" in capsys.readouterr().err
    assert not (tmp_path / "pwned.txt").exists()


def test_the_json_edition_trains_like_the_npz(npz: Path) -> None:
    a, b = load_chorales(npz), load_chorales(npz.with_suffix(".json"))
    for x, y in ((a.train, b.train), (a.valid, b.valid)):
        assert all(np.array_equal(p, q) for p, q in zip(x.seqs, y.seqs, strict=True))


def test_bad_data_gives_one_line_errors(tmp_path: Path, capsys) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    cases = {
        str(tmp_path / "junk.npz"): "not a Jsb16thSeparated .npz",
        str(tmp_path / "absent.npz"): "no such file",
        str(write_npz(tmp_path / "few.npz", train_n=1)): "fewer than --batch 2",
    }
    for path, message in cases.items():
        code = train_main(["--data", path, "--out", str(tmp_path / "o"), *TINY])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (path, err)
        assert err.startswith("train: error: ") and err.count("\n") == 1, err
    r = run_python(["-m", train.MODULE, *words("--data", tmp_path / "junk.npz", "--out", "x")])
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_solo_scheme_trains_on_a_midi_folder(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "solo"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        t, notes = 0.0, []
        for _ in range(30):
            d = float(rng.choice([0.25, 0.5, 1.0]))
            notes.append(BeatNote(int(rng.integers(40, 64)), t, t + d))
            t += d
        write_midi(notes, ["Cello"]).save(str(folder / f"piece{i}.mid"))
    out = tmp_path / "run"
    argv = ["--scheme", "solo", "--data", str(folder), "--out", str(out), "--steps", "2", *TINY]
    assert train_main(argv) == 0
    ck = load(out / "checkpoint.pt")
    assert ck["config"]["tokenizer"]["kind"] == "solo"
    assert ck["config"]["architecture"]["period"] == 2
    assert ck["config"]["data_info"]["valid_files"] == ["piece0.mid"]
    sample = mido.MidiFile(sorted((out / "samples").iterdir())[-1])
    assert SoloTokenizer().grammar_errors(SoloTokenizer().encode_midi(sample)) == 0


def test_general_scheme_trains_on_a_folder_of_any_midi(tmp_path: Path) -> None:
    folder = tmp_path / "any"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(10):
        notes = [BeatNote(int(rng.integers(40, 80)), k * 0.5, k * 0.5 + 1.0, k % 3,
                          int(rng.integers(30, 120))) for k in range(24)]  # fmt: skip
        write_midi(notes, ["A", "B", "C"]).save(
            str(folder / ("sub" if i % 2 else "") / f"p{i}.mid")
        )
    (folder / "broken.mid").write_bytes(b"MThd not really")
    out = tmp_path / "run"
    argv = ["--scheme", "general", "--data", str(folder), "--out", str(out), "--steps", "2", *TINY]
    assert train_main(argv) == 0
    ck = load(out / "checkpoint.pt")
    info = ck["config"]["data_info"]
    assert ck["config"]["tokenizer"]["kind"] == "general"
    assert info["pieces"] == {"train": 9, "valid": 1} and info["skipped_files"] == ["broken.mid"]
    assert info["valid_files"] == ["sub/p7.mid"]  # the 10th in path order, relative
    sample = mido.MidiFile(sorted((out / "samples").iterdir())[-1])
    tok = GeneralTokenizer()
    assert tok.grammar_errors(tok.encode_midi(sample)) == 0


def test_ddp_two_processes_match_one(npz: Path, tmp_path: Path) -> None:
    """torchrun with two gloo processes, each on half of every batch: rank 0 alone writes,
    and without dropout the weights are those of one process on the whole batch."""
    common = [*words("--data", npz, "--steps 4 --dropout 0 --save-every 100"), *TINY]
    ddp = tmp_path / "ddp"
    weights = "trainer.model.state_dict()"
    r = torchrun_two(tmp_path, train.__name__, weights, [*common, "--out", str(ddp)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 process(es)" in r.stdout and r.stdout.count("done: step 4/4") == 1
    assert not (tmp_path / "saves-rank1.txt").exists()
    ck = load(ddp / "checkpoint.pt")
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2
    w0, w1 = load(tmp_path / "weights-rank0.pt"), load(tmp_path / "weights-rank1.pt")
    single = tmp_path / "single"
    assert train_main([*common, "--out", str(single)]) == 0
    one = load(single / "checkpoint.pt")
    for key, value in w0.items():
        assert torch.equal(value, w1[key]), f"{key} differs between ranks"
        assert torch.allclose(value, one["model"][key], atol=1e-5), f"{key}: DDP != one"


# -------------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    data = write_npz(root / "chorales.npz", seed=1)
    argv = ["--data", str(data), "--out", str(root / "run"), "--steps", "6", *TINY]
    assert train_main(argv) == 0
    return root / "run" / "best.pt"


@pytest.fixture(scope="module")
def exported(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("assets") / "music" / "tiny-chorales"
    assert export.main(["--checkpoint", str(trained), "--out", str(out), "--default"]) == 0
    return out


def test_export_completes_the_cards_data_record(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "music" / "mine"
    argv = ["--checkpoint", str(trained), "--out", str(out), "--data-licence", "CC0",
            "--data-source", "my own recordings"]  # fmt: skip
    assert export.main(argv) == 0
    data = json.loads((out / "card.json").read_text())["data"]
    assert data["licence"] == "CC0" and data["source"] == "my own recordings"
    assert "sha256" in data  # the trainer's record is kept


def plugin_with(model_dir: Path, tmp_path: Path):
    from gdl_studio.core.host import Studio

    folder = tmp_path / "plugins" / "music"
    shutil.copytree(
        REPO / "plugins" / "music", folder, ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(model_dir, folder / model_dir.name)
    card = json.loads((model_dir / "card.json").read_text(encoding="utf-8"))
    table = export.manifest_table(card, model_dir, default=True)
    manifest = (folder / "plugin.toml").read_text(encoding="utf-8").split("[[models]]")[0]
    (folder / "plugin.toml").write_text(manifest + "\n" + table + "\n", encoding="utf-8")
    studio = Studio.create(
        include_builtin=False, include_entry_points=False, extra_folders=[tmp_path / "plugins"]
    )
    assert studio.registry.get("music").ok, studio.registry.get("music").state
    return studio


def test_export_prefill_and_steps_match_the_full_forward(trained: Path, exported: Path) -> None:
    import onnxruntime as ort

    card = json.loads((exported / "card.json").read_text(encoding="utf-8"))
    ck = load(trained)
    assert sorted(p.name for p in exported.iterdir()) == ["card.json", "prefill.onnx", "step.onnx"]
    assert card["onnx_vs_torch_max_abs_diff"] <= 1e-4 and card["window"] == 64
    assert card["tokenizer"] == ck["config"]["tokenizer"] and card["training"]["steps"] == 6
    assert set(card["files"]) == {"prefill.onnx", "step.onnx"}
    model = MusicTransformer(**card["architecture"])
    model.load_state_dict(ck["model"])
    model.eval()
    opts = ort.SessionOptions()
    pre = ort.InferenceSession(str(exported / "prefill.onnx"), opts, ["CPUExecutionProvider"])
    step = ort.InferenceSession(str(exported / "step.onnx"), opts, ["CPUExecutionProvider"])
    names = cache_names(2, "past_")
    assert [i.name for i in step.get_inputs()] == ["token", *names]
    ids = torch.randint(0, card["architecture"]["vocab_size"], (2, 150))  # past the window
    with torch.no_grad():
        full = model(ids).numpy()
    logits, *cache = pre.run(None, {"tokens": ids[:, :1].numpy()})
    worst = float(np.abs(logits[:, 0] - full[:, 0]).max())
    for t in range(1, 150):
        feeds = {"token": ids[:, t].numpy(), **dict(zip(names, cache, strict=True))}
        logits, *new = step.run(None, feeds)
        cache = [np.concatenate([c, n], axis=2) for c, n in zip(cache, new, strict=True)]
        worst = max(worst, float(np.abs(logits - full[:, t]).max()))
    assert worst < 2e-5
    rebuilt = torch_model_from_onnx(exported / "step.onnx", card)
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value)


def test_the_plugins_stream_is_the_torch_model(trained: Path, exported: Path) -> None:
    """The plugin's side (MusicModel, KVCache, Stream) over the exported graphs gives the
    torch model's logits token by token, also after the window is prefilled again."""
    from gdl_studio_plugins.music.model import MusicModel, Stream
    from gdl_studio_plugins.music.tokenizers import tokenizer_from_config

    card = json.loads((exported / "card.json").read_text(encoding="utf-8"))
    model = MusicTransformer(**card["architecture"])
    model.load_state_dict(load(trained)["model"])
    model.eval()
    plugin_model = MusicModel(
        OrtSession(exported / "prefill.onnx"),
        OrtSession(exported / "step.onnx"),
        tokenizer_from_config(card["tokenizer"]),
        card["window"],
    )
    rng = np.random.default_rng(3)
    ids = [0, *rng.integers(1, card["architecture"]["vocab_size"], 100).tolist()]
    stream = Stream(plugin_model, np.array(ids[:5]), None)
    for t in range(5, len(ids)):
        seen = stream.ids[-stream.cached :]  # what the cache holds
        with torch.no_grad():
            want = model(torch.tensor([seen]))[0, -1].numpy()
        assert np.abs(stream.logits - want).max() < 2e-5, t
        stream.push(ids[t])
    assert stream.cached < len(stream.ids) <= 101  # the window (64) was crossed


class OrtSession:
    """An ORT session with what MusicModel asks of the studio's ModelSession."""

    def __init__(self, path: Path) -> None:
        from gdl_studio.training.export import cpu_session

        self.session = cpu_session(path)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, feeds, outputs=None, state=None):
        return list(self.session.run(list(outputs) if outputs else None, feeds))


def test_init_fine_tunes_from_an_exported_model_or_a_checkpoint(
    trained: Path, exported: Path, tmp_path: Path, capsys
) -> None:
    data = write_npz(tmp_path / "more.npz", seed=2)
    # The source's architecture is taken: the tiny flags other than the layout's stay.
    rest = words("--batch 2 --max-len 64 --warmup 2 --sample-bars 1 --threads 1")
    source = torch_model_from_onnx(
        exported / "prefill.onnx", json.loads((exported / "card.json").read_text())
    ).state_dict()
    for init in (exported, trained):
        out = tmp_path / f"ft-{init.name}"
        argv = ["--data", str(data), "--out", str(out), "--init", str(init), "--steps", "1",
                "--lr", "1e-12", *rest]  # fmt: skip
        assert train_main(argv) == 0, capsys.readouterr().err
        ck = load(out / "checkpoint.pt")
        assert ck["config"]["architecture"]["d_model"] == 16
        assert ck["config"]["init"]["from"] == str(init.resolve())
        for key, value in source.items():  # one step at lr 1e-12 leaves the weights
            assert torch.allclose(ck["model"][key], value, atol=1e-6), key
    card = export.export(tmp_path / f"ft-{exported.name}" / "best.pt", tmp_path / "ft-card")
    assert card["training"]["init"]["model"] == "tiny-chorales"
    assert card["training"]["init"]["training"]["steps"] == 6  # the source's own record


def test_init_refuses_weights_that_do_not_fit(
    exported: Path, npz: Path, tmp_path: Path, capsys
) -> None:
    base = ["--data", str(npz), "--steps", "1", *words("--batch 2 --max-len 64 --threads 1")]
    cases = {
        ("--init", str(exported), "--d-model", "32"): "--d-model 32 (the weights have 16)",
        ("--init", str(exported), "--scheme", "solo"): "is not the 'solo' scheme's",
        ("--init", str(tmp_path / "absent")): "no such checkpoint",
        ("--init", str(tmp_path)): "no card.json and prefill.onnx there",
    }
    for extra, message in cases.items():
        out = tmp_path / "o"
        code = train_main([*base, "--out", str(out), *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (extra, err)
        assert not out.exists()  # nothing written
    assert train_main([*base, "--out", str(tmp_path / "r"), "--stop-after", "1"]) == 0
    code = train_main(["--out", str(tmp_path / "r"), "--resume", "--init", str(exported)])
    assert code == 2 and "--resume continues one" in capsys.readouterr().err


def test_export_refuses_a_checkpoint_of_something_else(tmp_path: Path, capsys) -> None:
    torch.save({"config": {}, "generator": {}}, tmp_path / "other.pt")
    with pytest.raises(SystemExit) as exc:
        export.main(["--checkpoint", str(tmp_path / "other.pt"), "--out", str(tmp_path / "m")])
    assert (
        exc.value.code == 2 and "not a checkpoint of the music trainer" in capsys.readouterr().err
    )


def test_eval_run_and_bench_on_the_exported_model(
    trained: Path, exported: Path, tmp_path: Path
) -> None:
    from gdl_studio.core.host import call_command, prepare_job, run_job

    studio = plugin_with(exported, tmp_path)
    out = call_command(studio, "music", "eval", None, pieces=8, bars=1)
    ck = load(trained)
    # The torch validation during training and ONNX Runtime's eval score the same tokens.
    assert out["val_nll"] == pytest.approx(ck["val_history"][-1]["val_nll"], abs=1e-4)
    assert out["pieces_scored"] == 2 and out["sampled_pieces"] == 8
    assert 0 <= out["valid_midi_share"] <= 1 and 0 <= out["grammar_error_ratio"] <= 1
    piece = run_job(prepare_job(studio, "music", params={"seed": 1, "length": 3}))
    ids = ChoraleTokenizer().encode_midi(piece.result.midi)
    assert len(ids) == 3 * 64 and piece.provenance.extra["grammar_errors"] == 0
    bench = call_command(studio, "music", "bench", None, repeat=3)
    assert set(bench["tokens_per_s"]) == {"128", "512", "2048"}
    assert all(v > 0 for v in bench["tokens_per_s"].values()) and bench["ratio"] > 0
    assert bench["max_abs_diff"] < 1e-3 and bench["generated_tokens"] == 8 * 64
    assert bench["torch_timed"] == "in its own process"
