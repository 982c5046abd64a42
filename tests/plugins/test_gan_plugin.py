"""The GAN plugin end to end with tiny generator and classifier graphs built by onnx.helper:
generation, classes, seeds, truncation, latent walks, GIF export, nearest images, eval."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gdl_studio.core.host import JobError, Studio, call_command, prepare_job, run_job
from gdl_studio.core.results import load_result, read_provenance, save_result
from gdl_studio.core.runtime import ModelIntegrityError
from tests.fixtures.images import classifier_onnx

ROOT = Path(__file__).resolve().parents[2]
LATENT = 8
CLASSES = ["zero", "one", "two"]


def generator_onnx(path: Path) -> str:
    """image = tanh(reshape(z @ W + E[label])): a conditional 'generator' with the real names."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(LATENT, 784)).astype(np.float32)
    e = rng.normal(size=(len(CLASSES), 784)).astype(np.float32) * 2
    nodes = [
        helper.make_node("MatMul", ["z", "W"], ["zw"]),
        helper.make_node("Gather", ["E", "label"], ["emb"], axis=0),
        helper.make_node("Add", ["zw", "emb"], ["h"]),
        helper.make_node("Tanh", ["h"], ["t"]),
        helper.make_node("Reshape", ["t", "shape"], ["image"]),
    ]
    graph = helper.make_graph(
        nodes, "gen",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", LATENT]),
         helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(e, "E"),
         numpy_helper.from_array(np.array([-1, 1, 28, 28], np.int64), "shape")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def gan_studio(tmp_path: Path) -> Studio:
    """The real plugin code and manifest with a tiny model added as its default."""
    folder = tmp_path / "plugins" / "gan"
    shutil.copytree(
        ROOT / "plugins" / "gan", folder, ignore=shutil.ignore_patterns("train", "__pycache__")
    )
    sha = generator_onnx(folder / "tiny.onnx")
    manifest = (ROOT / "plugins" / "gan" / "plugin.toml").read_text()
    manifest = (
        manifest.split("[[models]]")[0].rstrip()
        + f"""

[[models]]
id = "tiny"
file = "tiny.onnx"
sha256 = "{sha}"
default = true
[models.inputs]
z = ["batch", {LATENT}]
label = ["batch"]
[models.outputs]
image = ["batch", 1, 28, 28]
[models.extras]
classes = {json.dumps(CLASSES)}
dataset = "fashion"
"""
    )
    (folder / "plugin.toml").write_text(manifest)
    studio = Studio.create(include_builtin=False, include_entry_points=False,
                           extra_folders=[tmp_path / "plugins"])  # fmt: skip
    assert studio.registry.get("gan").ok, studio.registry.get("gan").state
    return studio


def run(studio: Studio, **params):
    return run_job(prepare_job(studio, "gan", params=params))


def pixels(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.int16)


def test_batch_is_deterministic_and_image_i_is_seed_plus_i(gan_studio: Studio) -> None:
    a = run(gan_studio, seed=10, batch=4, label="zero")
    b = run(gan_studio, seed=10, batch=4, label="zero")
    single = run(gan_studio, seed=12, batch=1, label="zero")
    assert len(a.result.images) == 4 and a.result.images[0].size == (28, 28)
    assert all(
        np.array_equal(pixels(x), pixels(y))
        for x, y in zip(a.result.images, b.result.images, strict=True)
    )
    assert np.array_equal(pixels(a.result.images[2]), pixels(single.result.images[0]))
    assert a.provenance.extra["seeds"] == [10, 11, 12, 13]
    assert not np.array_equal(pixels(a.result.images[0]), pixels(a.result.images[1]))


def test_classes_and_one_of_each(gan_studio: Studio) -> None:
    grid = run(gan_studio, seed=1, batch=6, label="one of each")
    assert grid.provenance.extra["labels"] == ["zero", "one", "two"] * 2
    assert grid.result.columns == 3
    zero = run(gan_studio, seed=1, batch=1, label="zero").result.images[0]
    two = run(gan_studio, seed=1, batch=1, label="two").result.images[0]
    assert not np.array_equal(pixels(zero), pixels(two))  # the class changes the image
    with pytest.raises(JobError, match="not one of"):
        prepare_job(gan_studio, "gan", params={"label": "seven"})


def test_truncation_pulls_towards_the_mean_image(gan_studio: Studio) -> None:
    full = run(gan_studio, seed=3, batch=8, label="zero", truncation=1.0).result.images
    low = run(gan_studio, seed=3, batch=8, label="zero", truncation=0.1).result.images
    spread = lambda ims: np.std(np.stack([pixels(i) for i in ims]), axis=0).mean()  # noqa: E731
    assert spread(low) < spread(full) / 3


def test_latent_walk_starts_and_ends_on_the_two_seeds(gan_studio: Studio, tmp_path: Path) -> None:
    out = run(gan_studio, mode="walk", seed=5, seed_b=99, frames=7, label="one")
    frames = out.result.images
    assert len(frames) == 7 and out.result.columns == 7
    start = run(gan_studio, seed=5, batch=1, label="one").result.images[0]
    end = run(gan_studio, seed=99, batch=1, label="one").result.images[0]
    assert np.abs(pixels(frames[0]) - pixels(start)).max() <= 1
    assert np.abs(pixels(frames[-1]) - pixels(end)).max() <= 1
    # Neighbouring frames are closer than the two ends: it is a walk, not a jump.
    step = np.abs(pixels(frames[3]) - pixels(frames[4])).mean()
    assert step < np.abs(pixels(frames[0]) - pixels(frames[-1])).mean()
    gif = tmp_path / "walk.gif"
    save_result(out.result, out.provenance, gif)
    back = load_result(gif)
    assert len(back.images) == 7
    assert read_provenance(gif).params["seed_b"] == 99


def test_nearest_mode_pairs_each_sample_with_a_training_image(
    gan_studio: Studio, fake_fashion: Path
) -> None:
    out = run(gan_studio, mode="nearest", seed=2, batch=3, label="zero", data=str(fake_fashion))
    imgs = out.result.images
    assert len(imgs) == 6 and out.result.columns == 2
    from gdl_studio.core.datasets import fashion_mnist

    train = fashion_mnist("train", fake_fashion).images
    for right in imgs[1::2]:
        assert any(np.array_equal(np.asarray(right), t) for t in train)
    assert len(out.provenance.extra["nearest_distance"]) == 3


def test_eval_reports_the_issue_keys(
    gan_studio: Studio, fake_fashion: Path, tmp_path: Path
) -> None:
    clf = classifier_onnx(tmp_path / "clf")
    ctx_out = call_command(gan_studio, "gan", "eval", None, data=fake_fashion, samples=40,
                           classifier=clf)  # fmt: skip
    for key in ("class_agreement", "classifier_test_accuracy", "fd", "fd_floor", "fd_baseline",
                "memorization_share"):  # fmt: skip
        assert key in ctx_out, key
    assert 0.0 <= ctx_out["class_agreement"] <= 1.0
    assert ctx_out["fd"] >= 0 and ctx_out["fd_floor"] >= 0
    assert ctx_out["samples"] == 40


def test_eval_refuses_a_tampered_classifier(
    gan_studio: Studio, fake_fashion: Path, tmp_path: Path
) -> None:
    clf = classifier_onnx(tmp_path / "clf")
    card = json.loads((clf.parent / "card.json").read_text())
    card["sha256"] = "0" * 64
    (clf.parent / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        call_command(gan_studio, "gan", "eval", None, data=fake_fashion, samples=10, classifier=clf)


def test_guess_mixes_real_and_generated_and_the_answer_is_true(
    gan_studio: Studio, fake_fashion: Path
) -> None:
    out = run(gan_studio, mode="guess", seed=4, batch=8, label="zero", data=str(fake_fashion))
    images, quiz = out.result.images, out.provenance.extra["quiz"]
    assert len(images) == 8 and sum(quiz["answer"]) == 4
    from gdl_studio.core.datasets import fashion_mnist

    train = fashion_mnist("train", fake_fashion)
    generated = run(gan_studio, seed=4, batch=4, label="zero").result.images
    made = iter(generated)
    for image, is_fake in zip(images, quiz["answer"], strict=True):
        if is_fake:  # exactly the generator's image for the next seed
            assert np.array_equal(pixels(image), pixels(next(made)))
        else:  # a training image of the requested class
            hits = [i for i, t in enumerate(train.images) if np.array_equal(np.asarray(image), t)]
            assert hits and train.labels[hits[0]] == 0
    again = run(gan_studio, mode="guess", seed=4, batch=8, label="zero", data=str(fake_fashion))
    assert again.provenance.extra["quiz"] == quiz  # the seed fixes the game too


def test_guess_without_the_training_data_is_a_clear_error(
    gan_studio: Studio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gdl_studio.core import datasets

    monkeypatch.setattr(datasets, "FASHION_DIRS", [str(tmp_path / "nowhere")])
    monkeypatch.delenv("GDL_FASHION_MNIST", raising=False)
    with pytest.raises(JobError, match="'guess' needs the training data"):
        run(gan_studio, mode="guess", seed=1, batch=4)


def test_cell_actions_remake_a_grid_image_alone_and_walk_between_two(gan_studio: Studio) -> None:
    from gdl_studio.core.cells import cell_actions

    grid = run(gan_studio, seed=20, batch=6, label="one of each")
    actions = {a.label: a for a in cell_actions(grid.provenance.extra, 6)}
    alone = actions["Make this image alone"].params_for(4)
    assert alone is not None and alone["batch"] == 1
    single = run(gan_studio, **alone).result.images[0]
    assert np.array_equal(pixels(single), pixels(grid.result.images[4]))
    start = actions["Start a latent walk here"].params_for(4)
    end = actions["End the latent walk here"].params_for(1)
    assert start is not None and end is not None
    walk = run(gan_studio, **{**start, **end, "frames": 5}).result.images
    assert np.abs(pixels(walk[0]) - pixels(grid.result.images[4])).max() <= 1
