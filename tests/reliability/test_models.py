"""User-added or tampered ONNX models: corrupt copies of every shipped model, external data
pointing outside the model's folder, signatures and hashes that differ from the manifest, and
PyTorch pickles offered as models.  Each ends in an error message, never a signal, a file read
from elsewhere or unpickled code."""

from __future__ import annotations

import ast
import ctypes
import hashlib
import json
import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gdl_studio.core.host import JobError, Studio, prepare_job, run_job
from gdl_studio.core.manifest import GraphSpec
from gdl_studio.core.runtime import (
    CPU,
    ModelIntegrityError,
    ModelLoadError,
    ModelSignatureError,
    SessionFactory,
)
from tests.fixtures.plugins import (
    IMAGE_COMPUTE,
    LATENT,
    image_manifest,
    tiny_generator_onnx,
    write_plugin,
)
from tests.reliability.conftest import LINUX, ROOT, describe, run_child, shipped_models

LOAD_IN_CHILD = """
import json, sys
from pathlib import Path
import numpy as np
from gdl_studio.core.errors import StudioError
from gdl_studio.core.runtime import SessionFactory
DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
          "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
          "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}
for path in sorted(Path(sys.argv[1]).glob("*.onnx")):
    print(json.dumps({"file": path.name, "stage": "start"}), flush=True)
    try:
        session = SessionFactory().session(path)  # no manifest: a user-added file
    except StudioError as exc:
        outcome = "refused: " + str(exc).splitlines()[0][:120]
    else:
        feeds = {}
        for arg in session._session.get_inputs():
            shape = [d if isinstance(d, int) and 0 < d < 64 else 1 for d in arg.shape]
            feeds[arg.name] = np.zeros(shape, DTYPES.get(arg.type, np.float32))
        try:
            session.run(feeds)
            outcome = "ran"
        except Exception as exc:  # what a plugin would see (the host reports it as one line)
            outcome = "run failed: " + type(exc).__name__
    print(json.dumps({"file": path.name, "outcome": outcome}), flush=True)
print("DONE", flush=True)
"""


def damaged_copies(model: Path, folder: Path, count: int, seed: int) -> list[Path]:
    """Bit flips (mostly in the first 4 kB, where the graph structure is), truncations and
    overwritten runs of bytes, written as separate .onnx files."""
    data = model.read_bytes()
    rng = random.Random(seed)
    out = []
    for i in range(count):
        b = bytearray(data)
        kind = ("flip", "flip", "flip", "truncate", "garble")[i % 5]
        if kind == "flip":
            for _ in range(rng.choice((1, 1, 2, 8))):
                pos = (
                    rng.randrange(min(len(b), 4096))
                    if rng.random() < 0.8
                    else rng.randrange(len(b))
                )
                b[pos] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            b = b[: rng.choice((0, 1, 7, 64, rng.randrange(len(b))))]
        else:
            pos = rng.randrange(len(b))
            b[pos : pos + 16] = bytes(rng.randrange(256) for _ in range(16))
        path = folder / f"{model.parent.name}-{model.stem}-{i:03d}-{kind}.onnx"
        path.write_bytes(bytes(b))
        out.append(path)
    return out


def load_damaged(tmp_path: Path, per_model: int) -> None:
    models = shipped_models()
    assert models, "no .onnx file under assets/"
    folder = tmp_path / "damaged"
    folder.mkdir()
    for i, model in enumerate(models):
        damaged_copies(model, folder, per_model, seed=i)
    # The address-space limit turns a forged tensor size into an allocation error, where an
    # unlimited child could be killed by the kernel instead (a signal, and a failed test).
    result = run_child(LOAD_IN_CHILD, args=[str(folder)], memory_mb=4096, cpu_s=600, timeout=600)
    lines = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    last = lines[-1]["file"] if lines else "(none)"
    # A negative code is a signal (a crash in ONNX Runtime): the file it was loading is named.
    assert result.returncode == 0, f"died while loading {last}: " + describe(result)
    assert result.stdout.rstrip().endswith("DONE")
    outcomes = [x["outcome"] for x in lines if "outcome" in x]
    assert len(outcomes) == per_model * len(models)
    for o in outcomes:  # loaded and ran, failed to run (the plugin's error), or one clear line
        assert o == "ran" or o.startswith(("refused: cannot load", "run failed: ")), o
    # An empty or cut file is never loaded.
    for x in lines:
        if "outcome" in x and "truncate" in x["file"]:
            assert x["outcome"].startswith("refused: cannot load"), x


def test_damaged_copies_of_shipped_models_give_errors_not_signals(tmp_path: Path) -> None:
    load_damaged(tmp_path, per_model=15)


@pytest.mark.slow
def test_many_damaged_copies_of_shipped_models(tmp_path: Path) -> None:
    load_damaged(tmp_path, per_model=250)


def test_damaged_shipped_model_is_refused_by_its_hash_before_loading(tmp_path: Path) -> None:
    calls: list[str] = []

    def maker(path: str, providers):  # would be ONNX Runtime
        calls.append(path)
        raise AssertionError("a model with the wrong sha256 reached ONNX Runtime")

    factory = SessionFactory(maker, available=[CPU])
    for model in shipped_models():
        good_sha = hashlib.sha256(model.read_bytes()).hexdigest()
        for copy in damaged_copies(model, tmp_path, 5, seed=7):
            with pytest.raises(ModelIntegrityError, match=r"sha256 .* does not match"):
                factory.session(copy, GraphSpec("default", copy.name, good_sha))
    assert calls == []


# -- external data -----------------------------------------------------------------------------
def model_with_external_data(folder: Path, location: str, in_subgraph: bool = False) -> Path:
    """y = x + W where W's four floats live in ``location`` (optionally inside a Loop body)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(4, dtype=np.float32), "W")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    if in_subgraph:
        body = helper.make_graph(
            [helper.make_node("Add", ["x_in", "W"], ["x_out"]),
             helper.make_node("Identity", ["c_in"], ["c_out"])],
            "body",
            [helper.make_tensor_value_info("i", TensorProto.INT64, []),
             helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
             helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [4])],
            [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [4])],
            [w],
        )  # fmt: skip
        inits = [numpy_helper.from_array(np.array(1, np.int64), "M"),
                 numpy_helper.from_array(np.array(True), "cond")]  # fmt: skip
        nodes = [helper.make_node("Loop", ["M", "cond", "x"], ["y"], body=body)]
    else:
        inits, nodes = [w], [helper.make_node("Add", ["x", "W"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


WEIGHTS = np.arange(4, dtype=np.float32).tobytes()


def test_external_data_inside_the_model_folder_loads(tmp_path: Path) -> None:
    path = model_with_external_data(tmp_path / "m", "weights.bin")
    (tmp_path / "m" / "weights.bin").write_bytes(WEIGHTS)
    (y,) = SessionFactory().session(path).run({"x": np.ones(4, np.float32)})
    np.testing.assert_array_equal(y, [1, 2, 3, 4])
    # What torch.onnx.export / onnx.save write for a large model loads too.
    import onnx

    big = onnx.load(str(path))
    out = tmp_path / "saved" / "model.onnx"
    out.parent.mkdir()
    onnx.save_model(big, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)  # fmt: skip
    (y,) = SessionFactory().session(out).run({"x": np.ones(4, np.float32)})
    np.testing.assert_array_equal(y, [1, 2, 3, 4])


def escape_cases(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """location -> (model folder name, fragment of the refusal); the marker file sits outside
    every model folder and holds valid weights, so only the check keeps it out."""
    marker = tmp_path / "secret.bin"
    marker.write_bytes(WEIGHTS)
    (tmp_path / "linked").mkdir()
    os.symlink(marker, tmp_path / "linked" / "weights.bin")
    return {
        "absolute": (str(marker), "is an absolute path"),
        "climbs": ("../secret.bin", "leaves the model's folder"),
        "climbs-late": ("sub/../../secret.bin", "leaves the model's folder"),
        "backslashes": ("..\\secret.bin", "leaves the model's folder"),
        "windows-drive": ("C:\\secret.bin", "is an absolute path"),
        "symlink": ("weights.bin", "links outside the model's folder"),
        "subgraph": (str(marker), "is an absolute path"),
        "missing": ("nothing-here.bin", "is missing"),
    }


def watch_opens(path: Path) -> int:
    """An inotify descriptor reporting every open or read of ``path`` by any process."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    assert fd >= 0
    in_access, in_open = 0x1, 0x20
    assert libc.inotify_add_watch(fd, str(path).encode(), in_access | in_open) >= 0
    return fd


def events(fd: int) -> int:
    try:
        return len(os.read(fd, 4096))
    except BlockingIOError:
        return 0


@pytest.mark.skipif(not LINUX, reason="inotify is Linux's")
def test_external_data_outside_the_model_folder_is_refused_and_never_read(tmp_path: Path) -> None:
    cases = escape_cases(tmp_path)
    for name, (location, _) in cases.items():
        folder = tmp_path / ("linked" if name == "symlink" else name)
        model_with_external_data(folder, location, in_subgraph=name == "subgraph")
    fd = watch_opens(tmp_path / "secret.bin")
    try:
        proc = run_child(
            f"""
            import json
            from pathlib import Path
            from gdl_studio.core.runtime import ModelLoadError, SessionFactory
            root = Path({str(tmp_path)!r})
            for name in {sorted(cases)!r}:
                folder = root / ("linked" if name == "symlink" else name)
                try:
                    SessionFactory().session(folder / "model.onnx")
                    print(json.dumps([name, "LOADED"]))
                except ModelLoadError as exc:
                    print(json.dumps([name, str(exc)]))
            """,
            memory_mb=None,
            timeout=60,
        )
        assert proc.returncode == 0, describe(proc)
        got = dict(json.loads(line) for line in proc.stdout.splitlines())
        assert events(fd) == 0, "the file outside the model folders was opened"
        # The watch works: opening the file ourselves is seen.
        (tmp_path / "secret.bin").read_bytes()
        assert events(fd) > 0
    finally:
        os.close(fd)
    for name, (_, fragment) in cases.items():
        assert got[name].startswith("cannot load model.onnx: "), (name, got[name])
        assert fragment in got[name], (name, got[name])


def test_the_walk_over_onnx_fields_matches_onnx_proto() -> None:
    """The field numbers the external-data walk follows are the ones onnx.proto defines."""
    import onnx

    from gdl_studio.core import onnx_check as oc

    messages = {oc._MODEL: onnx.ModelProto, oc._GRAPH: onnx.GraphProto, oc._NODE: onnx.NodeProto,
                oc._ATTR: onnx.AttributeProto, oc._TENSOR: onnx.TensorProto,
                oc._SPARSE: onnx.SparseTensorProto, oc._FUNCTION: onnx.FunctionProto,
                oc._TRAINING: onnx.TrainingInfoProto,
                oc._ENTRY: onnx.StringStringEntryProto}  # fmt: skip
    for kind, children in oc._CHILDREN.items():
        fields = {f.number: f for f in messages[kind].DESCRIPTOR.fields}
        for number, child in children.items():
            assert fields[number].message_type.name == messages[child].DESCRIPTOR.name
        # Every field whose message can hold a tensor is followed.
        holders = {m.DESCRIPTOR.name for k, m in messages.items() if k != oc._ENTRY}
        for f in fields.values():
            if f.message_type is not None and f.message_type.name in holders:
                assert f.number in children, f"{messages[kind].__name__}.{f.name} not followed"


# -- signature and hash against the manifest ----------------------------------------------------
def test_model_whose_signature_differs_from_its_manifest(tmp_path: Path) -> None:
    root = tmp_path / "plugins"
    d = write_plugin(root, "liar", "", {"compute.py": IMAGE_COMPUTE})
    sha = tiny_generator_onnx(d / "model.onnx")
    manifest = image_manifest(sha, pid="liar").replace(f'z = ["batch", {LATENT}]',
                                                       f'z = ["batch", {LATENT + 1}]')  # fmt: skip
    (d / "plugin.toml").write_text(manifest)
    studio = Studio.create(include_builtin=False, include_entry_points=False, extra_folders=[root])
    with pytest.raises(ModelSignatureError, match=r"input 'z' has shape \['batch', 4\], "
                                                  r"manifest says \['batch', 5\]"):  # fmt: skip
        run_job(prepare_job(studio, "liar", params={"seed": 1}))
    assert "manifest says" in studio.registry.get("liar").state  # listed with the reason
    assert studio.factory.loaded() == []
    # The shipped models are checked the same way.
    for model in shipped_models():
        graph = GraphSpec("default", model.name, hashlib.sha256(model.read_bytes()).hexdigest(),
                          outputs={"no_such_output": ("batch",)})  # fmt: skip
        with pytest.raises(ModelSignatureError, match=r"no output named 'no_such_output'"):
            SessionFactory().session(model, graph)


def test_model_whose_sha256_differs_is_refused(studio: Studio, plugin_root: Path) -> None:
    model = plugin_root / "tinygen" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-5] ^= 0x01  # one bit in a weight: loads fine in ONNX Runtime, but not what was shipped
    model.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match=r"model.onnx: sha256 .* does not match"):
        run_job(prepare_job(studio, "tinygen", params={"seed": 1}))
    assert "sha256" in studio.registry.get("tinygen").state
    with pytest.raises(JobError, match=r"not usable: model 'tiny': .*sha256"):
        prepare_job(studio, "tinygen")
    assert run_job(prepare_job(studio, "echo")).result.kind == "text"  # others unaffected


# -- pickles --------------------------------------------------------------------------------------
class _Touch:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def pickle_models(folder: Path, marker: Path) -> dict[str, Path]:
    """A raw pickle and a torch.save-style zip (archive/data.pkl), as .pt and as .onnx."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = pickle.dumps(_Touch(marker))
    out = {}
    for suffix in (".pt", ".onnx"):
        raw = folder / f"raw{suffix}"
        raw.write_bytes(payload)
        zipped = folder / f"torch-zip{suffix}"
        with zipfile.ZipFile(zipped, "w") as z:
            z.writestr("archive/data.pkl", payload)
            z.writestr("archive/version", "3\n")
        out[raw.name], out[zipped.name] = raw, zipped
    return out


def test_pt_file_offered_as_a_model_is_refused(tmp_path: Path, studio: Studio) -> None:
    marker = tmp_path / "unpickled"
    files = pickle_models(tmp_path / "pickles", marker)
    factory = SessionFactory()
    for name, path in files.items():
        with pytest.raises(ModelLoadError) as info:
            factory.session(path)  # the hash matches: the file is what its author shipped
        text = str(info.value)
        if path.suffix == ".pt":
            assert "only .onnx models are loaded" in text
        else:
            assert text.startswith(f"cannot load {name}")
    assert not marker.exists()
    # A manifest naming a .pt model is refused when it is read; other plugins are unaffected.
    root = tmp_path / "more"
    d = write_plugin(root, "ptplugin", "", {"compute.py": ""})
    sha = hashlib.sha256(files["raw.pt"].read_bytes()).hexdigest()
    (d / "plugin.toml").write_text(
        image_manifest(sha, pid="ptplugin").replace("model.onnx", "model.pt")
    )
    studio2 = Studio.create(include_builtin=False, include_entry_points=False,
                            extra_folders=[root, studio.sources["extra_folders"][0]])  # fmt: skip
    state = studio2.registry.get("ptplugin").state
    assert state.startswith("bad manifest:") and "only .onnx models are loaded" in state
    assert run_job(prepare_job(studio2, "tinygen", params={"seed": 3})).result.kind == "image"


SOURCES = sorted(
    p for p in [*(ROOT / "gdl_studio").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]
    # Training code (plugins' train/ and gdl_studio/training, the [train] extra) may use torch.
    if not {"train", "training"} & set(p.relative_to(ROOT).parts)
)  # fmt: skip
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve",
                  "marshal"}  # fmt: skip


def pickle_uses(path: Path) -> list[str]:
    """Imports of pickle-family modules, ``torch.load``, ``np.load(..., allow_pickle=True)``
    and ``pandas.read_pickle`` in one source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            found += [f"import {n}" for n in names if n and n.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr = node.func.attr
            if attr in ("read_pickle",) or (
                attr == "load" and getattr(node.func.value, "id", "") == "torch"
            ):
                found.append(f"{attr}()")
            if attr == "load" and any(
                k.arg == "allow_pickle" and getattr(k.value, "value", False) for k in node.keywords
            ):
                found.append("load(allow_pickle=True)")
    return found


def test_no_code_the_app_loads_can_unpickle() -> None:
    assert len(SOURCES) > 20
    offenders = {str(p.relative_to(ROOT)): u for p in SOURCES if (u := pickle_uses(p))}
    assert offenders == {}
    # The scan does find what it looks for.
    probe = ROOT / "tests" / "reliability" / "test_models.py"
    assert "import pickle" in pickle_uses(probe)


def test_no_pickle_is_loaded_while_the_app_works(tmp_path: Path, plugin_root: Path) -> None:
    """A child runs jobs of every kind through the CLI, reads them back from the history, opens
    inputs and a shipped model, with an audit hook that sees every unpickled class."""
    out = tmp_path / "out"
    proc = run_child(
        f"""
        import pickle, sys
        seen = []
        sys.addaudithook(lambda event, args: seen.append(args) if event == "pickle.find_class"
                         else None)
        from pathlib import Path
        from gdl_studio.cli import main
        from gdl_studio.core.history import History
        from gdl_studio.core.imageio import open_image, open_midi
        from gdl_studio.core.results import load_result, read_provenance
        from gdl_studio.core.runtime import SessionFactory
        out = Path({str(out)!r})
        codes = [main(["--plugin-dir", {str(plugin_root)!r}, "run", plugin, "--out",
                       str(out / name), "-q"])
                 for plugin, name in [("tinygen", "a.png"), ("echo", "b.txt"), ("scale", "c.mid")]]
        for path in sorted(out.iterdir()):
            read_provenance(path)
            if path.suffix != ".json":
                load_result(path)
        open_image(out / "a.png")
        open_midi(out / "c.mid")
        for model in {[str(m) for m in shipped_models()]!r}:
            SessionFactory().session(Path(model))
        before = list(seen)
        pickle.loads(pickle.dumps(Path("x")))  # the hook does see an unpickled class
        print("codes", codes, "before", len(before), "after", len(seen))
        """,
        memory_mb=None,
        timeout=120,
    )
    assert proc.returncode == 0, describe(proc)
    assert "codes [0, 0, 0] before 0 after 1" in proc.stdout, describe(proc)
