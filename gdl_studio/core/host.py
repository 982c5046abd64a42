"""The studio without a window: plugins, sessions, history and the job runner that the CLI and
the Qt layer both use, so a result made either way is the same file with the same provenance."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gdl_studio import __version__
from gdl_studio.core import discovery
from gdl_studio.core.config import Paths, Settings
from gdl_studio.core.discovery import PluginRecord, PluginRegistry, discover
from gdl_studio.core.errors import StudioError
from gdl_studio.core.history import History
from gdl_studio.core.imageio import check_input
from gdl_studio.core.jobs import Cancelled, TaskState
from gdl_studio.core.manifest import Manifest, ModelSpec, specs_for_model
from gdl_studio.core.params import FILE_TYPES, ParamError, resolve_params
from gdl_studio.core.results import Preview, Provenance, Result
from gdl_studio.core.runtime import (
    ModelIntegrityError,
    ModelLoadError,
    ModelSession,
    ModelSignatureError,
    SessionFactory,
)
from gdl_studio.core.supply import AssetCheck, check_assets

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MIDI_SUFFIXES = {".mid", ".midi"}
log = logging.getLogger(__name__)


class JobError(StudioError):
    """A job that cannot start or did not produce a result; the message is for the user."""


class PluginRunError(JobError):
    """A plugin's own code raised while running; the original exception is the cause."""


@dataclass
class Studio:
    """The host services, created once per process."""

    paths: Paths
    settings: Settings
    registry: PluginRegistry
    factory: SessionFactory
    history: History
    sources: dict[str, Any] = field(default_factory=dict)  # how the registry was discovered
    assets: AssetCheck = field(default_factory=AssetCheck)  # shipped files vs SHA256SUMS

    @classmethod
    def create(
        cls,
        paths: Paths | None = None,
        *,
        safe_mode: bool = False,
        include_builtin: bool = True,
        include_entry_points: bool = True,
        extra_folders: Iterable[Path] = (),
        factory: SessionFactory | None = None,
    ) -> Studio:
        paths = paths or Paths.default()
        sources = {
            "safe_mode": safe_mode,
            "include_builtin": include_builtin,
            "include_entry_points": include_entry_points,
            "extra_folders": [Path(p) for p in extra_folders],
        }
        studio = cls(paths, Settings(paths.settings_file), PluginRegistry(),
                     factory or SessionFactory(), History(paths.history), sources)  # fmt: skip
        if include_builtin and not safe_mode:
            # The shipped files are checked once, before any plugin can read one of them.
            studio.assets = check_assets(discovery.assets_folder())
            for path, reason in studio.assets.refused.items():
                studio.factory.refuse(path, reason)
        studio.rediscover()
        return studio

    def rediscover(self) -> None:
        """Read the manifests again (no plugin code runs), e.g. after enabling a plugin."""
        src = self.sources
        if src.get("safe_mode"):
            self.registry = PluginRegistry()
            return
        self.registry = discover(
            self.paths.user_plugins,
            self.settings.disabled_plugins(),
            include_builtin=src.get("include_builtin", True),
            include_entry_points=src.get("include_entry_points", True),
            extra_folders=src.get("extra_folders", ()),
        )
        for rec in self.registry:
            refused = _refused_asset(rec, self.assets)
            if refused and rec.error is None:
                rec.error = refused


def _refused_asset(rec: PluginRecord, check: AssetCheck) -> str | None:
    """The reason a plugin is unusable when a refused file lies in its assets folder (its
    code may read any file there, not only the models the factory checks)."""
    if rec.assets_dir is None or not check.refused:
        return None
    folder = rec.assets_dir.resolve()
    for path, reason in check.refused.items():
        if path.is_relative_to(folder):
            return reason
    return None


@dataclass
class PluginContext:
    """What a plugin's run/eval/bench gets from the host: its model, sessions and files."""

    studio: Studio
    record: PluginRecord
    model: ModelSpec | None
    _used: list[ModelSession] = field(default_factory=list)

    @property
    def manifest(self) -> Manifest:
        assert self.record.manifest is not None
        return self.record.manifest

    @property
    def plugin_dir(self) -> Path:
        return self.record.folder

    def graph_path(self, graph: str = "default") -> Path:
        model = self._require_model()
        if graph not in model.graphs:
            raise JobError(f"model {model.id!r} has no graph {graph!r}")
        return self.record.graph_file(model.graphs[graph])

    def session(self, graph: str = "default") -> ModelSession:
        """The ONNX Runtime session for one graph of the chosen model (hash and signature
        checked on first load)."""
        model = self._require_model()
        try:
            sess = self.studio.factory.session(self.graph_path(graph), model.graphs[graph])
        except (ModelIntegrityError, ModelLoadError, ModelSignatureError) as exc:
            # Shown in the Plugins dialog until the file is fixed and plugins are re-read.
            self.record.error = f"model {model.id!r}: {exc}"
            raise
        if sess not in self._used:
            self._used.append(sess)
        return sess

    def card(self) -> dict[str, Any]:
        model = self._require_model()
        if not model.card:
            return {}
        path = self.record.asset_path(model.card)
        return dict(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else {}

    @property
    def provider(self) -> str:
        """What really ran this job: the provider of every session it used."""
        texts = list(dict.fromkeys(s.provider_text for s in self._used))
        return "; ".join(texts) if texts else "none"

    def _require_model(self) -> ModelSpec:
        if self.model is None:
            raise JobError(f"plugin {self.record.id!r} has no model")
        return self.model


@dataclass
class Job:
    """A validated request: run it with :func:`run_job`."""

    context: PluginContext
    params: dict[str, Any]

    @property
    def seed(self) -> int | None:
        seeds = [p.name for p in self.context.manifest.params if p.type == "seed"]
        return self.params.get(seeds[0]) if seeds else None


@dataclass
class JobOutcome:
    result: Result
    provenance: Provenance
    notices: list[str]


def usable_record(studio: Studio, plugin_id: str) -> PluginRecord:
    try:
        record = studio.registry.get(plugin_id)
    except KeyError as exc:
        raise JobError(str(exc.args[0])) from None
    if not record.ok:
        raise JobError(f"plugin {plugin_id!r} is not usable: {record.state}")
    return record


def context_for(studio: Studio, plugin_id: str, model_id: str | None) -> PluginContext:
    record = usable_record(studio, plugin_id)
    try:
        model = record.manifest.model(model_id) if record.manifest else None
    except ValueError as exc:
        raise JobError(str(exc)) from None
    return PluginContext(studio, record, model)


def prepare_job(
    studio: Studio,
    plugin_id: str,
    *,
    model_id: str | None = None,
    params: dict[str, Any] | None = None,
    inputs: Sequence[Path] = (),
) -> Job:
    """Validate everything before any work: plugin, model, parameter values and input files."""
    ctx = context_for(studio, plugin_id, model_id)
    given = dict(params or {})
    for path in inputs:
        name = input_param_for(ctx.manifest, Path(path))
        given[name] = str(path)
    specs = specs_for_model(ctx.manifest.params, ctx.model)
    shown = {spec.name for spec in specs}
    for spec in ctx.manifest.params:
        if spec.name in given and spec.name not in shown:
            model = ctx.model.id if ctx.model else "none"
            raise JobError(
                f"{spec.name}: only for the models of kind {', '.join(spec.for_kinds)} "
                f"(the model is {model}; choose another with --model)"
            )
    try:
        resolved = resolve_params(specs, given)
    except ParamError as exc:
        raise JobError(str(exc)) from None
    for spec in ctx.manifest.params:
        value = resolved.get(spec.name)
        if spec.type in FILE_TYPES and value is not None:
            try:
                check_input(Path(value), spec.type)
            except ValueError as exc:
                raise JobError(str(exc)) from None
    return Job(ctx, resolved)


def input_param_for(manifest: Manifest, path: Path) -> str:
    """The file parameter an ``--input`` file (or a dropped file) fills, by its type."""
    suffix = path.suffix.lower()
    kind = "image" if suffix in IMAGE_SUFFIXES else "midi" if suffix in MIDI_SUFFIXES else None
    if kind is None:
        raise JobError(f"{path.name}: not an image or MIDI file")
    for spec in manifest.params:
        if spec.type == kind:
            return spec.name
    raise JobError(f"plugin {manifest.id!r} takes no {kind} input")


def run_job(job: Job, state: TaskState | None = None) -> JobOutcome:
    """Run the plugin, forwarding previews to ``state``; return the result and its provenance.

    Raises :class:`~gdl_studio.core.jobs.Cancelled` when cancelled and :class:`JobError` when the
    plugin produced no result.  Saving is the caller's (history or ``--out``).
    """
    state = state or TaskState()
    ctx = job.context
    run = ctx.record.load("run")
    state.progress(0.0, "starting")
    result: Result | None = None
    with plugin_code(ctx.record, "run"):
        output = run(dict(job.params), ctx, state)
        if inspect.isgenerator(output):
            # A cancel is thrown into the generator at the yield where it is noticed, so a
            # plugin whose work is worth keeping half-done (a dream, a long text) can catch it
            # and yield what it has (with ``extra["stopped"] = "cancelled"``); one that does
            # not catch it ends the job as cancelled.
            pending: Cancelled | None = None
            while True:
                try:
                    item = output.throw(pending) if pending else next(output)
                except StopIteration:
                    break
                pending = None
                if isinstance(item, Result):
                    result = item
                    continue
                if isinstance(item, Preview):
                    state.preview(item)
                if state.cancelled:
                    pending = Cancelled()
        elif isinstance(output, Result):
            result = output
    if result is None:
        state.check()
        raise JobError(f"plugin {ctx.record.id!r} finished without a result")
    if result.kind != ctx.manifest.kind:
        raise JobError(
            f"plugin {ctx.record.id!r} returned {result.kind}, expected {ctx.manifest.kind}"
        )
    state.progress(1.0, "done")
    return JobOutcome(result, provenance_for(job, result), list(state.notices))


@contextmanager
def plugin_code(record: PluginRecord, command: str) -> Iterator[None]:
    """Run a plugin's own code: whatever it raises (even ``sys.exit()``) becomes one
    :class:`PluginRunError` naming the plugin, so the CLI prints one line and the window one
    message.  Cancelling and the host's own errors pass through unchanged."""
    try:
        yield
    except (Cancelled, StudioError):
        raise
    except (Exception, SystemExit) as exc:
        log.info("plugin %s %s failed", record.id, command, exc_info=True)  # for its author
        raise PluginRunError(f"plugin {record.id!r} failed: {type(exc).__name__}: {exc}") from exc


def provenance_for(job: Job, result: Result) -> Provenance:
    ctx = job.context
    return Provenance(
        plugin=ctx.manifest.id,
        plugin_version=ctx.manifest.version,
        model=ctx.model.id if ctx.model else None,
        model_sha256=ctx.model.sha256 if ctx.model else None,
        params=dict(job.params),
        seed=job.seed,
        provider=ctx.provider,
        kind=result.kind,
        app_version=__version__,
        ort_version=_ort_version(),
        extra=dict(result.extra),
    )


def _ort_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        for dist in ("onnxruntime-gpu", "onnxruntime"):
            try:
                return version(dist)
            except PackageNotFoundError:
                continue
    except Exception:  # metadata is best effort: never fail a job over a version string
        pass
    return "unknown"


def call_command(
    studio: Studio, plugin_id: str, command: str, model_id: str | None, **kwargs: Any
) -> dict[str, Any]:
    """Run a plugin's ``eval`` or ``bench`` command and return its JSON-able dict."""
    ctx = context_for(studio, plugin_id, model_id)
    if not ctx.record.has(command):
        raise JobError(f"plugin {plugin_id!r} has no {command} command")
    fn = ctx.record.load(command)
    with plugin_code(ctx.record, command):
        out = fn(ctx, **kwargs)
    if not isinstance(out, dict):
        raise JobError(f"plugin {plugin_id!r} {command} did not return a dict")
    out.setdefault("plugin", plugin_id)
    out.setdefault("model", ctx.model.id if ctx.model else None)
    out.setdefault("provider", ctx.provider)
    return out
