"""Results, previews and provenance: what a plugin made and everything needed to make it again.

Provenance travels inside the file: PNG gets a ``parameters`` text chunk (the form A1111 /
ComfyUI tools read) plus a ``gdl_studio`` chunk holding the full JSON record; MIDI gets meta
text events; text gets a JSON sidecar (``name.txt.json``).
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from gdl_studio.core.atomic import atomic_write, atomic_write_files
from gdl_studio.core.imageio import MAX_IMAGE_PIXELS, InputError, open_checked, read_midi

PROVENANCE_KEY = "gdl_studio"
SCHEMA = 1
EXTENSIONS = {"image": ".png", "text": ".txt", "midi": ".mid"}  # what history and `run` write
# Also accepted by save_result: a batch of images as an animated GIF (e.g. a latent walk).
ALSO_ACCEPTED = {"image": (".gif",)}
GIF_FRAME_MS = 120
MAX_TEXT_BYTES = 16 * 1024 * 1024


@dataclass
class Result:
    """The final output of a run.  Exactly one of images / text / midi is set, by ``kind``."""

    kind: str
    images: list[Any] = field(default_factory=list)  # PIL images (a batch is a grid)
    text: str = ""
    probs: list[float] | None = None  # per character, for text coloured by probability
    midi: Any = None  # mido.MidiFile
    columns: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # plugin facts kept in provenance

    @classmethod
    def image(cls, images: list[Any], columns: int | None = None, **extra: Any) -> Result:
        return cls("image", images=list(images), columns=columns, extra=extra)

    @classmethod
    def of_text(cls, text: str, probs: list[float] | None = None, **extra: Any) -> Result:
        return cls("text", text=text, probs=probs, extra=extra)

    @classmethod
    def of_midi(cls, midi: Any, **extra: Any) -> Result:
        return cls("midi", midi=midi, extra=extra)


@dataclass
class Preview:
    """A cheap intermediate view: images so far, a text chunk to append, or notes so far."""

    kind: str
    images: list[Any] = field(default_factory=list)
    text: str = ""
    probs: list[float] | None = None
    notes: list[Any] = field(default_factory=list)


@dataclass
class Provenance:
    """Everything that made a result, so that opening the file restores the settings."""

    plugin: str
    plugin_version: str
    model: str | None
    model_sha256: str | None
    params: dict[str, Any]
    seed: int | None
    provider: str
    kind: str
    app_version: str
    ort_version: str
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    extra: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=True)

    @classmethod
    def from_json(cls, text: str) -> Provenance:
        data = json.loads(text)
        if not isinstance(data, dict) or "plugin" not in data or "params" not in data:
            raise ValueError("not a GDL Studio provenance record")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def a1111_parameters(self, size: tuple[int, int] | None = None) -> str:
        """The ``parameters`` text as A1111-style tools write it: a prompt line, then
        ``Key: value`` pairs on the last line."""
        prompt = next((str(v) for k, v in self.params.items() if k in ("prompt", "text")), "")
        first = prompt or f"{self.plugin} {self.model or ''}".strip()
        pairs: list[tuple[str, Any]] = []
        if "steps" in self.params:
            pairs.append(("Steps", self.params["steps"]))
        if self.seed is not None:
            pairs.append(("Seed", self.seed))
        if size:
            pairs.append(("Size", f"{size[0]}x{size[1]}"))
        if self.model_sha256:
            pairs.append(("Model hash", self.model_sha256[:10]))
        if self.model:
            pairs.append(("Model", self.model))
        pairs.append(("Plugin", f"{self.plugin} {self.plugin_version}"))
        for k, v in self.params.items():
            if k not in ("steps", "seed", "prompt", "text") and v is not None:
                pairs.append((k.replace("_", " ").capitalize(), v))
        pairs.append(("Version", f"GDL Studio {self.app_version}"))
        line = ", ".join(f"{k}: {_a1111_value(v)}" for k, v in pairs)
        return f"{first}\n{line}"


def _a1111_value(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return json.dumps(text) if ("," in text or ":" in text) else text


def grid(images: list[Any], columns: int | None = None, gap: int = 2) -> Any:
    """Tile a batch into one image (what the canvas shows and what the history keeps)."""
    from PIL import Image

    if len(images) == 1:
        return images[0]
    cols = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    mode = "RGBA" if any(im.mode == "RGBA" for im in images) else "RGB"
    sheet = Image.new(mode, (cols * w + (cols - 1) * gap, rows * h + (rows - 1) * gap), "white")
    for i, im in enumerate(images):
        sheet.paste(im.convert(mode), ((i % cols) * (w + gap), (i // cols) * (h + gap)))
    return sheet


def result_image(result: Result, index: int | None = None) -> Any:
    """The image a save writes: one cell of a batch, or the whole grid."""
    if index is not None:
        return result.images[index]
    return grid(result.images, result.columns)


def save_result(
    result: Result, prov: Provenance, path: Path, index: int | None = None
) -> list[Path]:
    """Write ``result`` with its provenance to ``path`` atomically; return the files written.

    ``index`` saves one image of a batch (its per-item facts, such as its own seed, are kept).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    allowed = (EXTENSIONS[result.kind], *ALSO_ACCEPTED.get(result.kind, ()))
    if suffix not in allowed:
        raise ValueError(
            f"a {result.kind} result is saved as {' or '.join(allowed)}, "
            f"not {path.suffix or 'no extension'}"
        )
    if index is not None:
        prov = Provenance(**{**asdict(prov), "extra": {**prov.extra, "index": index}})
    if result.kind == "image" and suffix == ".gif":
        frames = [result.images[index]] if index is not None else result.images
        gif = _gif_bytes(frames, prov)
        return [atomic_write(path, lambda fh: fh.write(gif))]
    if result.kind == "image":
        image = result_image(result, index)
        payload = _png_bytes(image, prov)
        return [atomic_write(path, lambda fh: fh.write(payload))]
    if result.kind == "midi":
        midi = _midi_with_provenance(result.midi, prov)
        return [atomic_write(path, lambda fh: _write_midi(midi, fh))]
    sidecar = path.with_name(path.name + ".json")
    # The sidecar is renamed into place first: a text file never exists without its
    # provenance; both are written before either is renamed, so a full disk changes neither.
    atomic_write_files([(sidecar, prov.to_json().encode()), (path, result.text.encode())])
    return [path, sidecar]


def _png_bytes(image: Any, prov: Provenance) -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", prov.a1111_parameters(image.size))
    info.add_itxt(PROVENANCE_KEY, prov.to_json(), zip=True)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _gif_bytes(frames: list[Any], prov: Provenance) -> bytes:
    """An animated GIF that loops forever; the provenance rides in the GIF comment."""
    buf = io.BytesIO()
    rgb = [f.convert("RGB") for f in frames]
    comment = f"{PROVENANCE_KEY}:{prov.to_json()}".encode()
    rgb[0].save(buf, format="GIF", save_all=True, append_images=rgb[1:], loop=0,
                duration=GIF_FRAME_MS, comment=comment)  # fmt: skip
    return buf.getvalue()


def _midi_with_provenance(midi: Any, prov: Provenance) -> Any:
    import copy

    import mido

    out = copy.deepcopy(midi)
    if not out.tracks:
        out.tracks.append(mido.MidiTrack())
    meta = [
        mido.MetaMessage("text", text=f"Made with GDL Studio: {prov.plugin} {prov.model or ''}"),
        mido.MetaMessage("text", text=f"{PROVENANCE_KEY}:{prov.to_json()}"),
    ]
    track = out.tracks[0]
    # Drop any older record so re-saving a continued piece keeps one provenance.
    kept = [
        m for m in track
        if not (m.is_meta and m.type == "text" and str(m.text).startswith(PROVENANCE_KEY + ":"))
    ]  # fmt: skip
    track[:] = meta + kept
    return out


def _write_midi(midi: Any, fh: IO[bytes]) -> None:
    midi.save(file=fh)


def read_provenance(path: Path) -> Provenance:
    """Read the provenance stored in (or beside) a GDL Studio output; ``ValueError`` if none.

    The file may come from anywhere (a drop, the history folder), so it is opened with the
    same limits as a plugin's input: one expected format, the pixel limit, the MIDI checks.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".gif":
        with open_checked(path, ("GIF",)) as im:
            comment = im.info.get("comment", b"")
        text = comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment)
        if not text.startswith(PROVENANCE_KEY + ":"):
            raise ValueError(f"{path.name} was not made by GDL Studio (no provenance comment)")
        return Provenance.from_json(text[len(PROVENANCE_KEY) + 1 :])
    if ext == ".png":
        with open_checked(path, ("PNG",)) as im:
            chunk = im.info.get(PROVENANCE_KEY)
        if not chunk:
            raise ValueError(f"{path.name} was not made by GDL Studio (no provenance chunk)")
        return Provenance.from_json(str(chunk))
    if ext in (".mid", ".midi"):
        midi = read_midi(path)
        for track in midi.tracks:
            for msg in track:
                if msg.is_meta and msg.type == "text" and msg.text.startswith(PROVENANCE_KEY + ":"):
                    return Provenance.from_json(msg.text[len(PROVENANCE_KEY) + 1 :])
        raise ValueError(f"{path.name} was not made by GDL Studio (no provenance text event)")
    sidecar = path.with_name(path.name + ".json")
    if ext == ".txt" and sidecar.is_file():
        return Provenance.from_json(_read_text(sidecar))
    if ext == ".json":
        return Provenance.from_json(_read_text(path))
    raise ValueError(f"{path.name} has no GDL Studio provenance")


def load_result(path: Path) -> Result:
    """Read a saved output back as a Result (for the gallery and for continuing work).

    Errors are ``OSError`` or ``ValueError`` (an :class:`InputError` for a file over a limit).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".gif":
        from PIL import Image, ImageSequence

        frames: list[Image.Image] = []
        with open_checked(path, ("GIF",)) as im:
            w, h = im.size
            try:
                for frame in ImageSequence.Iterator(im):
                    # The pixel limit holds for the whole animation: a small GIF can declare
                    # thousands of frames, each of which becomes a full RGB image here.
                    if (len(frames) + 1) * w * h > MAX_IMAGE_PIXELS:
                        raise InputError(
                            f"{path.name}: more than {MAX_IMAGE_PIXELS // 10**6} Mpx of frames"
                        )
                    frames.append(frame.convert("RGB"))
            except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
                raise InputError(f"{path.name}: unreadable image ({exc})") from None
        return Result.image(frames, columns=len(frames))
    if ext == ".png":
        from PIL import Image

        with open_checked(path, ("PNG",)) as im:
            try:
                im.load()
            except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
                raise InputError(f"{path.name}: unreadable image ({exc})") from None
            return Result.image([im.copy()])
    if ext in (".mid", ".midi"):
        return Result.of_midi(read_midi(path))
    return Result.of_text(_read_text(path))


def _read_text(path: Path) -> str:
    # Text results and sidecars are small; a huge file dropped on the window is refused
    # instead of being read whole into memory.
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise InputError(f"{path.name}: {size // 2**20} MB is too large for a text result")
    return path.read_text(encoding="utf-8")
