"""Plugin manifests: a good one parses completely; every kind of bad one is refused by key."""

from __future__ import annotations

import textwrap
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from gdl_studio.core.manifest import Manifest, ManifestError, load_manifest, parse_manifest

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "C" * 64  # upper case is accepted and normalised

GOOD = f'''
id = "full-plugin_1"
name = "Full plugin"
version = "2.0.1"
api = 1
kind = "image"
description = "Everything a manifest can hold."
inputs = ["image", "mask"]
outputs = ["image"]
icon = "icon.svg"

[entry]
run = "compute:run"
eval = "evaluate:evaluate"
bench = "evaluate:bench"
widgets = "widgets:make"

[[models]]
id = "small"
name = "Small"
file = "small.onnx"
sha256 = "{SHA_A}"
card = "small.json"
description = "one graph, shorthand form"
[models.inputs]
z = ["batch", 16]
[models.outputs]
image = ["batch", 3, 64, 64]

[[models]]
id = "big"
default = true
extras = {{ steps = 4 }}
[models.graphs.encoder]
file = "enc.onnx"
sha256 = "{SHA_B}"
inputs = {{ x = ["batch", 3, "h", "w"] }}
[models.graphs.decoder]
file = "dec.onnx"
sha256 = "{SHA_C}"

[[params]]
name = "steps"
type = "int"
default = 20
min = 1
max = 100
step = 1
label = "Steps"
help = "Denoising steps."

[[params]]
name = "strength"
type = "float"
default = 0.5
min = 0.0
max = 1.0

[[params]]
name = "sampler"
type = "choice"
default = "ddim"
choices = ["ddim", "euler"]

[[params]]
name = "tile"
type = "bool"
default = false

[[params]]
name = "seed"
type = "seed"

[[params]]
name = "prompt"
type = "text"
default = "a cat"
multiline = true

[[params]]
name = "init_image"
type = "image"
optional = true

[[params]]
name = "melody"
type = "midi"
optional = true

[[params]]
name = "area"
type = "mask"
extras = {{ brush = 8 }}
'''


def good() -> dict:
    return tomllib.loads(GOOD)


def refused(data: dict) -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifest(data)
    return str(info.value)


def test_good_manifest_parses_everything(tmp_path: Path) -> None:
    path = tmp_path / "plugin.toml"
    path.write_text(GOOD)
    m = load_manifest(path)
    assert isinstance(m, Manifest)
    assert (m.id, m.name, m.version, m.api, m.kind) == (
        "full-plugin_1",
        "Full plugin",
        "2.0.1",
        1,
        "image",
    )
    assert m.path == path
    assert m.entry == {
        "run": "compute:run",
        "eval": "evaluate:evaluate",
        "bench": "evaluate:bench",
        "widgets": "widgets:make",
    }
    assert m.inputs == ("image", "mask")
    assert m.outputs == ("image",)
    assert m.icon == "icon.svg"

    small, big = m.models
    # Single-graph shorthand: one graph called "default".
    assert list(small.graphs) == ["default"]
    g = small.graphs["default"]
    assert (g.file, g.sha256) == ("small.onnx", SHA_A)
    assert g.inputs == {"z": ("batch", 16)}
    assert g.outputs == {"image": ("batch", 3, 64, 64)}
    assert small.card == "small.json"
    assert small.sha256 == SHA_A
    assert not small.default

    # A graphs table: each graph named, hashes lower-cased, identity joined in name order.
    assert set(big.graphs) == {"encoder", "decoder"}
    assert big.graphs["decoder"].sha256 == SHA_C.lower()
    assert big.graphs["encoder"].inputs == {"x": ("batch", 3, "h", "w")}
    assert big.sha256 == f"{SHA_C.lower()}+{SHA_B}"
    assert big.name == "big"  # falls back to the id
    assert big.default
    assert big.extras == {"steps": 4}

    types = {p.name: p.type for p in m.params}
    assert types == {
        "steps": "int",
        "strength": "float",
        "sampler": "choice",
        "tile": "bool",
        "seed": "seed",
        "prompt": "text",
        "init_image": "image",
        "melody": "midi",
        "area": "mask",
    }
    steps = m.param("steps")
    assert steps is not None
    assert (steps.default, steps.min, steps.max, steps.step) == (20, 1, 100, 1)
    assert steps.title == "Steps"
    assert m.param("sampler").choices == ("ddim", "euler")
    assert m.param("prompt").multiline
    assert m.param("init_image").optional
    assert m.param("area").extras == {"brush": 8}
    assert m.param("area").title == "Area"
    assert m.param("nothing") is None


def test_minimal_manifest_defaults() -> None:
    m = parse_manifest(
        {"id": "x", "name": "X", "version": "1", "api": 1, "kind": "text", "entry": {"run": "a:b"}}
    )
    assert m.models == () and m.params == () and m.inputs == ()
    assert m.outputs == ("text",)
    assert m.model(None) is None


@pytest.mark.parametrize("key", ["id", "name", "version", "api", "kind", "entry"])
def test_missing_required_key(key: str) -> None:
    data = good()
    del data[key]
    assert f"{key} is required" in refused(data)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("name", 3, "name must be str, not int"),
        ("api", True, "api must be int, not bool"),
        ("api", "1", "api must be int, not str"),
        ("version", 2, "version must be str"),
        ("entry", "compute:run", "entry must be dict"),
        ("models", {"id": "x"}, "models must be list"),
        ("params", "steps", "params must be list"),
    ],
)
def test_wrong_type(key: str, value: object, expected: str) -> None:
    data = good()
    data[key] = value
    assert expected in refused(data)


def test_wrong_type_in_model_and_param() -> None:
    data = good()
    data["models"][0]["default"] = "yes"
    assert "models[0].default must be bool, not str" in refused(data)
    data = good()
    data["params"][0]["min"] = True
    assert "params[0].min must be int or float, not bool" in refused(data)
    data = good()
    data["models"][0]["inputs"] = {"z": ["batch", 1.5]}
    assert "models[0].inputs.z" in refused(data)


def test_unknown_keys_at_every_level() -> None:
    data = good()
    data["colour"] = "red"
    assert "colour: unknown key" in refused(data)
    data = good()
    data["models"][1]["colour"] = "red"
    assert "models[1].colour: unknown key" in refused(data)
    data = good()
    data["models"][1]["graphs"]["encoder"]["colour"] = "red"
    assert "models[1].graphs.encoder.colour: unknown key" in refused(data)
    data = good()
    data["params"][2]["colour"] = "red"
    assert "params[2].colour: unknown key" in refused(data)


@pytest.mark.parametrize("sha", ["abc", "g" * 64, "a" * 63, "a" * 65])
def test_bad_sha256(sha: str) -> None:
    data = good()
    data["models"][0]["sha256"] = sha
    assert "models[0].sha256 must be 64 hex digits" in refused(data)
    data = good()
    data["models"][1]["graphs"]["decoder"]["sha256"] = sha
    assert "models[1].graphs.decoder.sha256 must be 64 hex digits" in refused(data)


def test_model_without_file_or_graphs() -> None:
    data = good()
    data["models"][0] = {"id": "nofile"}
    assert "models[0].file is required" in refused(data)


def test_duplicate_model_ids() -> None:
    data = good()
    data["models"][1]["id"] = "small"
    assert "two models share an id" in refused(data)


@pytest.mark.parametrize("api", [0, 2, 99])
def test_unsupported_api(api: int) -> None:
    data = good()
    data["api"] = api
    msg = refused(data)
    assert f"api {api} is not supported" in msg


def test_unknown_kind() -> None:
    data = good()
    data["kind"] = "video"
    msg = refused(data)
    assert "kind 'video'" in msg and "image, text, midi" in msg


def test_bad_id() -> None:
    data = good()
    data["id"] = "9lives"
    assert "id '9lives'" in refused(data)
    data["id"] = "has space"
    assert "id 'has space'" in refused(data)


def test_unknown_input_kind_and_param_type() -> None:
    data = good()
    data["inputs"] = ["video"]
    assert "inputs: 'video'" in refused(data)
    data = good()
    data["params"][0]["type"] = "complex"
    assert "params[0].type 'complex'" in refused(data)


def test_choice_without_choices() -> None:
    data = good()
    del data["params"][2]["choices"]
    assert "params[2].choices" in refused(data)
    data["params"][2]["choices"] = [1, 2]
    assert "params[2].choices" in refused(data)


@pytest.mark.parametrize(
    ("index", "value", "expected"),
    [
        (0, 101, "params[0].default: steps: 101 is above the maximum 100"),
        (0, 0, "params[0].default: steps: 0 is below the minimum 1"),
        (0, 1.5, "params[0].default"),
        (1, 1.5, "params[1].default: strength: 1.5 is above the maximum 1"),
        (2, "heun", "params[2].default: sampler: 'heun' is not one of ddim, euler"),
        (3, "perhaps", "params[3].default"),
    ],
)
def test_bad_default(index: int, value: object, expected: str) -> None:
    data = good()
    data["params"][index]["default"] = value
    assert expected in refused(data)


def test_min_above_max_and_missing_default() -> None:
    data = good()
    data["params"][0]["min"] = 200
    data["params"][0]["default"] = 300
    assert "params[0].min is above max" in refused(data)
    data = good()
    del data["params"][0]["default"]
    assert "params[0].default is required for a int parameter" in refused(data)
    data["params"][0]["optional"] = True
    assert parse_manifest(data).param("steps").default is None


def test_duplicate_param_names() -> None:
    data = good()
    data["params"][1]["name"] = "steps"
    assert "two parameters share a name" in refused(data)


def test_entry_rules() -> None:
    data = good()
    del data["entry"]["run"]
    assert "entry.run is required" in refused(data)
    data = good()
    data["entry"]["run"] = "compute.run"
    assert "entry.run must be a 'module:attribute' string" in refused(data)
    data = good()
    data["entry"]["eval"] = "a:b:c"
    assert "entry.eval must be a 'module:attribute' string" in refused(data)
    data = good()
    data["entry"]["run"] = 3
    assert "entry.run must be a 'module:attribute' string" in refused(data)
    data = good()
    data["entry"]["train"] = "t:train"
    assert "entry.train: unknown command" in refused(data)


def test_invalid_toml_and_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "plugin.toml"
    path.write_text('id = "x"\nname = \n')
    with pytest.raises(ManifestError, match=r"not valid TOML") as info:
        load_manifest(path)
    assert str(path) in str(info.value)
    with pytest.raises(ManifestError, match=r"cannot read"):
        load_manifest(tmp_path / "missing.toml")
    path.write_bytes(b"\xff\xfe id")
    with pytest.raises(ManifestError, match=r"cannot read"):
        load_manifest(path)


def test_load_manifest_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "plugin.toml"
    path.write_text(GOOD.replace('name = "Full plugin"', "name = 3"))
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "name must be str" in str(info.value)


def test_model_lookup() -> None:
    m = parse_manifest(good())
    assert m.model(None).id == "big"  # the one marked default, although second
    assert m.model("small").id == "small"
    with pytest.raises(ManifestError) as info:
        m.model("nope")
    msg = str(info.value)
    assert "'nope'" in msg and "small, big" in msg


def test_model_lookup_without_default_takes_first() -> None:
    data = good()
    del data["models"][1]["default"]
    assert parse_manifest(data).model(None).id == "small"


def test_manifest_text_of_fixture_badmanifest(plugin_root: Path) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(plugin_root / "badmanifest" / "plugin.toml")
    assert "is required" in str(info.value)


def test_dedented_inline_toml_is_same_as_dict() -> None:
    text = textwrap.dedent(
        """
        id = "t"
        name = "T"
        version = "1"
        api = 1
        kind = "midi"
        entry = { run = "m:r" }
        """
    )
    assert parse_manifest(tomllib.loads(text)).kind == "midi"


def test_graph_threads_are_a_small_whole_number() -> None:
    data = good()
    data["models"][0]["threads"] = 1
    assert parse_manifest(data).models[0].graphs["default"].threads == 1
    assert good() and parse_manifest(good()).models[0].graphs["default"].threads == 0
    for bad in (-1, 1000, True, "2"):
        data["models"][0]["threads"] = bad
        assert "threads" in refused(data)


def test_a_graph_may_live_in_an_installed_package_and_free_its_dims() -> None:
    base = {"id": "x", "name": "X", "version": "1", "api": 1, "kind": "image",
            "entry": {"run": "a:b"}}  # fmt: skip
    graph = {"id": "m", "file": "models/net.onnx", "sha256": "a" * 64,
             "package": "some_pkg.sub", "free_dims": True}  # fmt: skip
    (model,) = parse_manifest({**base, "models": [graph]}).models
    spec = model.graphs["default"]
    assert (spec.package, spec.free_dims) == ("some_pkg.sub", True)
    plain = parse_manifest({**base, "models": [{**graph, "package": "", "free_dims": False}]})
    assert plain.models[0].graphs["default"].package == ""
    with pytest.raises(ManifestError, match="not a Python package name"):
        parse_manifest({**base, "models": [{**graph, "package": "../evil"}]})
    with pytest.raises(ManifestError, match="free_dims"):
        parse_manifest({**base, "models": [{**graph, "free_dims": "yes"}]})


def test_for_kinds_keeps_a_parameter_to_the_models_of_those_kinds() -> None:
    from gdl_studio.core.manifest import specs_for_model

    data = good()
    data["params"][0]["for_kinds"] = ["slow"]
    m = parse_manifest(data)
    assert m.params[0].for_kinds == ("slow",)
    name = m.params[0].name
    plain = m.models[0]
    slow = replace(plain, extras={**plain.extras, "kind": "slow"})
    assert name not in {s.name for s in specs_for_model(m.params, plain)}
    assert name in {s.name for s in specs_for_model(m.params, slow)}
    assert name not in {s.name for s in specs_for_model(m.params, None)}
    data["params"][0]["for_kinds"] = "slow"
    assert "params[0].for_kinds" in refused(data)


def test_value_names_name_every_value_of_an_int() -> None:
    data = good()
    data["params"][0].update(min=1, max=3, default=2, value_names=["low", "Middle", "high"])
    spec = parse_manifest(data).param("steps")
    assert spec.value_names == ("low", "Middle", "high") and spec.value_name(2) == "Middle"
    assert spec.coerce("middle") == 2 and spec.coerce("3") == 3 and spec.coerce(1) == 1
    with pytest.raises(ValueError, match="neither a number nor one of its names"):
        spec.coerce("medium")
    data["params"][0]["value_names"] = ["low", "high"]
    assert "2 names for the 3 values from 1 to 3" in refused(data)
    data["params"][0]["value_names"] = ["low", "LOW", "high"]
    assert "two values have the same name" in refused(data)
    data = good()
    data["params"][1]["value_names"] = ["a"]  # a float
    assert "only for an int parameter with min and max" in refused(data)
