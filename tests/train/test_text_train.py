"""The text plugin's training code: the model and its step module, the training CLI (files,
exact resume, bad files, two-process DDP), the ONNX export (checked against torch, int8) and
eval/bench on an exported model.

Tiny models on a few hundred characters of made-up text, one thread: the module takes well
under a minute on two CPU cores.  Skipped without torch (the [train] extra)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from gdl_studio_plugins.text.train import export, train  # noqa: E402
from gdl_studio_plugins.text.train.model import CharLSTM, CharLSTMStep  # noqa: E402

from gdl_studio.core.runtime import sha256_file  # noqa: E402

from .conftest import REPO, exit_code, load, run_python, torchrun_two, words  # noqa: E402

# 400 characters, batch 4 x bptt 16: 360 train characters, 90 per stream, 5 steps per epoch.
TINY = words("--hidden 16 --embed 8 --layers 2 --batch 4 --bptt 16 --threads 1")
TINY += words("--sample-chars 20 --warmup 2")


def made_up_text(n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away"]
    out = ""
    while len(out) < n:
        sentence = " ".join(rng.choice(words, rng.integers(3, 8)))
        out += sentence.capitalize() + (".\n" if rng.random() < 0.3 else ". ")
    return out[:n]


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "story.txt"
    path.write_text(made_up_text(400), encoding="utf-8")
    return path


def train_main(argv: list[str]) -> int:
    return exit_code(train.main, argv)


# --------------------------------------------------------------------------------- model


def test_step_module_is_the_lstm_one_character_at_a_time() -> None:
    torch.manual_seed(0)
    model = CharLSTM(11, embed=5, hidden=7, layers=3, dropout=0.3).eval()
    ids = torch.randint(0, 11, (2, 9))
    with torch.no_grad():
        seq, (h_end, c_end) = model(ids, model.zero_state(2))
        step = CharLSTMStep(model)
        h, c = model.zero_state(2)
        for t in range(9):
            logits, h, c = step(ids[:, t], h, c)
            assert torch.allclose(logits, seq[:, t], atol=1e-6)
    assert torch.allclose(h, h_end, atol=1e-6) and torch.allclose(c, c_end, atol=1e-6)


# ------------------------------------------------------------------------------ training


def test_training_writes_its_files(text_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = [
        "--data",
        str(text_file),
        "--out",
        str(out),
        "--steps",
        "7",
        "--log-every",
        "2",
        "--lr",
        "0.03",
        *TINY,
    ]
    assert train_main(argv) == 0
    said = capsys.readouterr().out
    assert "400 characters (360 train, 40 validation)" in said
    assert "5 steps per epoch" in said and "val_nll" in said and "done: step 7/7" in said
    ck = load(out / "checkpoint.pt")
    assert ck["step"] == 7 and ck["config"]["command"].endswith(" ".join(argv))
    vocab = ck["config"]["vocabulary"]
    assert (
        vocab == sorted(set(text_file.read_text())) and ck["config"]["architecture"]["layers"] == 2
    )
    assert ck["config"]["data_info"]["split"] == {"train": [0, 360], "val": [360, 400]}
    # Validated at the end of epoch 1 (step 5) and at the end (step 7), a sample each time.
    assert [v["step"] for v in ck["val_history"]] == [5, 7]
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "step_0000005.txt",
        "step_0000007.txt",
    ]
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,train_nll,val_nll,lr,grad_norm,chars_per_s"
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "4", "5", "6", "7", "7"]
    assert ck["carry"] is not None and ck["carry"][0].shape == (2, 4, 16)
    best = load(out / "best.pt")
    assert min(v["val_nll"] for v in ck["val_history"]) == best["val_history"][-1]["val_nll"]
    # It learns: 7 steps at a high rate beat the uniform 1/|vocab| guess.
    assert ck["val_history"][-1]["val_nll"] < np.log(len(vocab))
    assert train_main(argv) == 2  # a second fresh run would overwrite it
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_resume_continues_exactly(text_file: Path, tmp_path: Path, capsys) -> None:
    common = ["--data", str(text_file), "--steps", "12", "--log-every", "2", *TINY]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train_main([*common, "--out", str(whole)]) == 0
    # Stopped mid-epoch (5 steps per epoch): the carried state must come back too.
    assert train_main([*common, "--out", str(split), "--stop-after", "3"]) == 0
    assert "stopped at step 3 of 12" in capsys.readouterr().out
    first = load(split / "checkpoint.pt")
    assert first["step"] == 3
    assert train_main(["--out", str(split), "--resume"]) == 0
    assert "resuming" in capsys.readouterr().out
    a, b = load(whole / "checkpoint.pt"), load(split / "checkpoint.pt")
    assert b["step"] == 12 and len(b["commands"]) == 2 and "--resume" in b["commands"][1]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), f"{key} differs after resuming"
    assert [v["val_nll"] for v in a["val_history"]] == [v["val_nll"] for v in b["val_history"]]
    steps = [int(r.split(",")[0]) for r in (split / "log.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps) and steps[-1] == 12
    # Longer: the step count goes on; a training setting may not change.
    assert train_main(["--out", str(split), "--resume"]) == 0
    assert "already at step 12" in capsys.readouterr().out
    assert train_main(["--out", str(split), "--resume", "--steps", "14"]) == 0
    assert load(split / "checkpoint.pt")["step"] == 14
    assert train_main(["--out", str(split), "--resume", "--steps", "16", "--hidden", "32"]) == 2
    assert "--hidden" in capsys.readouterr().err


def test_bad_files_give_one_line_errors(tmp_path: Path, capsys) -> None:
    cases = {
        "empty.txt": (b"", "the file is empty"),
        "blank.txt": (b"  \n\n ", "only whitespace"),
        "latin.txt": ("Ça va?\n".encode("latin-1") * 50, "not utf-8 text (byte 0xC7 at offset 0"),
        "short.txt": (b"Too short for one step.", "fewer than one step of 4 streams x 17"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        code = train_main(["--data", str(tmp_path / name), "--out", str(tmp_path / "o"), *TINY])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (name, err)
        assert err.startswith("train: error: ") and err.count("\n") == 1, err
    assert train_main(["--data", str(tmp_path / "absent.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    # As a command: no traceback either.
    r = run_python(
        ["-m", train.MODULE, *words("--data", tmp_path / "latin.txt", "--out", tmp_path / "o")]
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--decode-errors replace" in r.stderr


def test_undecodable_bytes_can_be_replaced(tmp_path: Path) -> None:
    data = made_up_text(400).encode().replace(b"cat", b"c\xe3t")
    (tmp_path / "mixed.txt").write_bytes(data)
    out = tmp_path / "run"
    argv = [
        "--data",
        str(tmp_path / "mixed.txt"),
        "--decode-errors",
        "replace",
        "--out",
        str(out),
        "--steps",
        "1",
        *TINY,
    ]
    assert train_main(argv) == 0
    cfg = load(out / "checkpoint.pt")["config"]
    assert "\ufffd" in cfg["vocabulary"] and cfg["data_info"]["replaced"] > 0


def test_ddp_two_processes_match_one(text_file: Path, tmp_path: Path) -> None:
    """torchrun with two gloo processes, each on half the streams: rank 0 alone writes, and
    without dropout the weights are those of one process on all the streams."""
    common = [*words("--data", text_file, "--steps 6 --dropout 0 --save-every 100"), *TINY]
    ddp = tmp_path / "ddp"
    weights = "trainer.model.state_dict()"
    r = torchrun_two(tmp_path, train.__name__, weights, [*common, "--out", str(ddp)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 process(es)" in r.stdout and r.stdout.count("done: step 6/6") == 1
    # 5 steps per epoch: saved at the epoch end (5) and at the end (6), by rank 0 only.
    saves = (tmp_path / "saves-rank0.txt").read_text().splitlines()
    assert [p for p in saves if p.endswith("checkpoint.pt")] == [str(ddp / "checkpoint.pt")] * 2
    assert str(ddp / "best.pt") in saves
    assert not (tmp_path / "saves-rank1.txt").exists()
    ck = load(ddp / "checkpoint.pt")
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2 and ck["step"] == 6
    assert ck["carry"][0].shape == (2, 4, 16)  # the state of all four streams
    w0, w1 = load(tmp_path / "weights-rank0.pt"), load(tmp_path / "weights-rank1.pt")
    single = tmp_path / "single"
    assert train_main([*common, "--out", str(single)]) == 0
    one = load(single / "checkpoint.pt")
    for key, value in w0.items():
        assert torch.equal(value, w1[key]), f"{key} differs between ranks"
        assert torch.allclose(value, one["model"][key], atol=1e-5), f"{key}: DDP != one process"
    assert ck["val_history"][-1]["val_nll"] == pytest.approx(
        one["val_history"][-1]["val_nll"], abs=1e-5
    )


# -------------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    data = root / "story.txt"
    data.write_text(made_up_text(400, seed=1), encoding="utf-8")
    assert (
        train_main(["--data", str(data), "--out", str(root / "run"), "--steps", "10", *TINY]) == 0
    )
    return root / "run" / "checkpoint.pt"


def plugin_with(model_dir: Path, tmp_path: Path):
    """The real plugin (training code included, for bench) with an exported model in place of
    the shipped ones."""
    from gdl_studio.core.host import Studio

    folder = tmp_path / "plugins" / "text"
    shutil.copytree(REPO / "plugins" / "text", folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(model_dir, folder / model_dir.name)
    card = json.loads((model_dir / "card.json").read_text(encoding="utf-8"))
    table = export.manifest_table(card, model_dir / "model.onnx", default=True)
    # The shipped models are the manifest's last tables (their files are in assets/).
    manifest = (folder / "plugin.toml").read_text(encoding="utf-8").split("[[models]]")[0]
    (folder / "plugin.toml").write_text(manifest + "\n" + table + "\n", encoding="utf-8")
    studio = Studio.create(
        include_builtin=False, include_entry_points=False, extra_folders=[tmp_path / "plugins"]
    )
    assert studio.registry.get("text").ok, studio.registry.get("text").state
    return studio


def test_export_matches_torch_and_writes_the_card(trained: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "assets" / "text" / "story" / "model.onnx"
    assert (
        export.main(["--checkpoint", str(trained), "--out", str(out), "--quantize", "never"]) == 0
    )
    printed = capsys.readouterr().out
    card = json.loads((out.parent / "card.json").read_text(encoding="utf-8"))
    ck = load(trained)
    assert card["model"] == "story" and card["sha256"] == sha256_file(out)
    assert card["sha256"] in printed and 'file = "story/model.onnx"' in printed
    assert card["vocabulary"] == ck["config"]["vocabulary"]
    assert card["onnx_vs_torch_max_abs_diff"] <= 1e-4
    assert card["training"]["steps"] == 10 and card["training"]["command"].startswith("python -m")
    assert card["data"]["sha256"] == ck["config"]["data_info"]["sha256"]
    assert card["val_nll"] == round(ck["val_history"][-1]["val_nll"], 5)
    assert card["quantization"] == {"mode": "never", "tolerance_nats": 0.01, "kept": False}
    assert sorted(p.name for p in out.parent.iterdir()) == ["card.json", "model.onnx"]
    import onnxruntime as ort

    s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in s.get_inputs()] == [
        ("token", ["batch"]),
        ("h", [2, "batch", 16]),
        ("c", [2, "batch", 16]),
    ]
    assert [o.name for o in s.get_outputs()] == ["logits", "h_out", "c_out"]
    # Stepping the graph through a text gives the torch model's logits.
    model = CharLSTM(**card["architecture"])
    model.load_state_dict(ck["model"])
    model.eval()
    ids = torch.randint(
        0, len(card["vocabulary"]), (3, 30), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        want, _ = model(ids, model.zero_state(3))
    h = c = np.zeros((2, 3, 16), np.float32)
    for t in range(30):
        logits, h, c = s.run(None, {"token": ids[:, t].numpy(), "h": h, "c": c})
        assert np.abs(logits - want[:, t].numpy()).max() < 1e-4
    rebuilt = export.torch_model_from_onnx(out, card)
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value)


def test_init_fine_tunes_a_model_on_another_text_in_its_vocabulary(
    trained: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "assets" / "text" / "story"
    argv = [
        "--checkpoint",
        str(trained),
        "--out",
        str(folder / "model.onnx"),
        "--quantize",
        "never",
    ]
    assert export.main(argv) == 0
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    source = export.torch_model_from_onnx(folder / "model.onnx", card).state_dict()
    # The training text's characters, an accent the model lacks (mapped) and some it cannot
    # map (dropped).
    mine = tmp_path / "mine.txt"
    mine.write_text(made_up_text(400, seed=1).replace("cat", "café") + " 100%", encoding="utf-8")
    rest = words("--batch 4 --bptt 16 --threads 1 --sample-chars 20 --warmup 2 --lr 1e-12")
    for init in (folder, trained):
        out = tmp_path / f"ft-{init.name}"
        argv = ["--data", str(mine), "--out", str(out), "--init", str(init), "--steps", "1"]
        assert train_main([*argv, *rest]) == 0, capsys.readouterr().err
        said = capsys.readouterr().out
        assert "to fit the vocabulary of --init's model: mapped 'é'→'e'; dropped 4" in said
        ck = load(out / "checkpoint.pt")
        assert ck["config"]["vocabulary"] == card["vocabulary"]
        assert ck["config"]["init"]["from"] == str(init.resolve())
        assert ck["config"]["architecture"]["hidden"] == 16
        for key, value in source.items():  # one step at lr 1e-12 leaves the weights
            assert torch.allclose(ck["model"][key], value, atol=1e-6), key
    # The card of the fine-tuned model says where it started.
    out = tmp_path / "ft.onnx"
    ft = tmp_path / f"ft-{folder.name}" / "checkpoint.pt"
    assert export.main(["--checkpoint", str(ft), "--out", str(out), "--quantize", "never"]) == 0
    record = json.loads((tmp_path / "card.json").read_text(encoding="utf-8"))["training"]
    assert record["init"]["model"] == "story" and record["init"]["training"]["steps"] == 10
    # Resuming the fine-tuning run keeps the source's vocabulary.
    out = tmp_path / f"ft-{folder.name}"
    assert train_main(["--out", str(out), "--resume", "--steps", "2"]) == 0
    assert load(out / "checkpoint.pt")["config"]["vocabulary"] == card["vocabulary"]


def test_init_refuses_what_does_not_fit(trained: Path, text_file: Path, tmp_path: Path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "card.json").write_text('{"kind": "music-transformer", "architecture": {}}')
    (other / "model.onnx").write_bytes(b"")
    base = ["--data", str(text_file), "--steps", "1", *words("--batch 4 --bptt 16 --threads 1")]
    cases = {
        ("--init", str(trained), "--hidden", "32"): "--hidden 32 (the weights have 16)",
        ("--init", str(other)): "not a char-lstm-step model's folder",
        ("--init", str(tmp_path)): "no card.json and model.onnx there",
        ("--init", str(text_file)): "not a readable checkpoint",
    }
    for extra, message in cases.items():
        out = tmp_path / "o"
        code = train_main([*base, "--out", str(out), *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (extra, err)
        assert not out.exists()
    assert train_main([*base, "--out", str(tmp_path / "r")]) == 0
    code = train_main(["--out", str(tmp_path / "r"), "--resume", "--init", str(trained)])
    assert code == 2 and "--resume continues one" in capsys.readouterr().err


def test_export_refuses_a_checkpoint_of_something_else(tmp_path: Path, capsys) -> None:
    torch.save({"config": {}, "generator": {}}, tmp_path / "other.pt")
    assert export.main.__name__ == "main"
    with pytest.raises(SystemExit) as exc:
        export.main(["--checkpoint", str(tmp_path / "other.pt"), "--out", str(tmp_path / "m.onnx")])
    assert exc.value.code == 2 and "not a checkpoint of the text trainer" in capsys.readouterr().err


def test_eval_and_run_on_the_exported_model(trained: Path, tmp_path: Path) -> None:
    from gdl_studio.core.host import call_command, prepare_job, run_job

    model_dir = tmp_path / "export" / "story"
    card = export.export(trained, model_dir / "model.onnx", quantize_mode="auto")
    q = card["quantization"]
    # auto: both graphs measured on the validation split, int8 kept only if it earns it.
    assert {"val_nll_fp32", "val_nll_int8", "ms_per_char_fp32", "ms_per_char_int8"} <= set(q)
    assert q["kept"] == (
        q["val_nll_change"] <= 0.01 and q["ms_per_char_int8"] < q["ms_per_char_fp32"]
    )
    studio = plugin_with(model_dir, tmp_path)
    out = call_command(studio, "text", "eval", None)
    # The torch validation during training and ONNX Runtime's eval score the same rows.
    assert out["split"] == "val" and out["chars_scored"] == 39
    assert out["val_nll"] == pytest.approx(
        card["val_nll_torch"], abs=1e-4 if not q["kept"] else 0.02
    )
    text = run_job(
        prepare_job(studio, "text", params={"seed": 1, "seed_text": "The cat", "length": 50})
    ).result.text
    assert text.startswith("The cat") and len(text) == 57
    assert set(text) <= set(card["vocabulary"])


def test_int8_graph_and_bench(trained: Path, tmp_path: Path) -> None:
    from gdl_studio.core.host import call_command

    model_dir = tmp_path / "export" / "story8"
    card = export.export(trained, model_dir / "model.onnx", quantize_mode="always")
    q = card["quantization"]
    assert q["kept"] and abs(q["val_nll_change"]) < 0.05
    import onnx

    ops = {n.op_type for n in onnx.load(str(model_dir / "model.onnx")).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    studio = plugin_with(model_dir, tmp_path)
    out = call_command(studio, "text", "bench", None, repeat=20, chars=300)
    for key in ("chars_per_s", "ort_ms", "torch_ms", "ratio"):
        assert out[key] > 0, key
    assert out["quantized_int8"] and out["generated_chars"] == 300
    assert out["torch_timed"] == "in its own process"
    assert out["ratio"] == pytest.approx(out["torch_ms"] / out["ort_ms"], rel=0.02)
    # The dequantised torch model is close to the int8 graph (bench checked it, < 0.5).
    assert out["max_abs_diff"] < 0.5
