"""Text from a character LSTM: seed text (typed, a random corpus line, or the text to
continue), temperature / top-k / top-p sampling, stopping at a sentence or paragraph end, text
streamed in chunks, and the same seed compared at several temperatures.  numpy + ONNX Runtime
only."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.results import Preview, Result

from .corpus import CorpusError, Encoded, read_text
from .model import CharModel, State
from .sampling import STOPS, Sampler, ends_here

CHUNK = 48  # characters per streamed preview: a few per frame at thousands of characters/s
CONTEXT_MAX = 2000  # seed characters fed to the model; an LSTM's state forgets long before
NAN = math.nan
# "Continue this text" on the canvas's menu: the text as shown becomes the seed, kept verbatim
# (gdl_studio.core.cells: the window fills `text_param` from the canvas, so the text is not
# stored twice in the provenance).
CONTINUE_ACTIONS = [
    {"label": "Continue this text", "params": [{"mode": "continue", "seed_source": "typed"}],
     "text_param": "seed_text", "run": True},
]  # fmt: skip


@dataclass
class Start:
    """Where generation starts: the state after the seed and the logits for what follows."""

    logits: np.ndarray
    state: State
    shown: str  # the seed as it appears in the result
    probs: list[float]  # one per character of ``shown``
    encoded: Encoded


@dataclass
class Generated:
    text: str = ""
    probs: list[float] = field(default_factory=list)
    stopped: str = "length"


def start_from(model: CharModel, seed: str, keep_original: bool, task: TaskState) -> Start:
    """Feed the seed (its last CONTEXT_MAX characters) through the model.

    Characters the vocabulary lacks are mapped or dropped (``encoded`` says which); the result
    shows the seed as the model read it, or as given when ``keep_original`` (continuing the
    user's own text)."""
    enc = model.vocab.encode(seed)
    ids = enc.ids[-CONTEXT_MAX:]
    state = model.zero_state(1)
    if len(ids) == 0:
        # Nothing to condition on: start as if at the beginning of a line.
        start = next((c for c in ("\n", " ") if c in model.vocab), model.vocab.chars[0])
        logits, state = model.step(np.array([model.vocab.index[start]]), state)
        shown = seed if keep_original else ""
        return Start(logits, state, shown, [NAN] * len(shown), enc)

    def progress(i: int) -> None:
        task.progress(0.05 * i / len(ids), "reading the seed text")

    logits, state, probs = model.prefill(ids, state, task, progress)
    assert logits is not None
    if keep_original and enc.changed:
        return Start(logits, state, seed, [NAN] * len(seed), enc)
    shown = seed if keep_original else enc.text
    seed_probs = [NAN] * (len(shown) - len(probs)) + probs
    return Start(logits, state, shown, seed_probs, enc)


def generate(
    model: CharModel,
    start: Start,
    sampler: Sampler,
    seed: int,
    length: int,
    stop: str,
    task: TaskState,
) -> Iterator[Generated]:
    """Sample up to ``length`` characters; yields the growing text every CHUNK characters and
    once at the end (the caller slices off what it has already shown)."""
    # One uniform per character, drawn up front: the same stream as drawing them one by one.
    draws = np.random.default_rng(seed).random(length).tolist()
    logits, state = start.logits, start.state
    out = Generated()
    chars: list[str] = []
    vocab = model.vocab.chars
    watch = stop != "length"
    tail = start.shown[-8:]
    token = np.zeros(1, np.int64)
    for i in range(length):
        if i % CHUNK == 0:
            task.check()
        idx, p = sampler.choose(logits[0], draws[i])
        ch = vocab[idx]
        if watch:
            if ends_here(tail, ch, stop):
                out.stopped = stop
                break
            tail = (tail + ch)[-8:]
        chars.append(ch)
        out.probs.append(p)
        if i + 1 < length:
            token[0] = idx
            logits, state = model.step(token, state)
        if len(chars) % CHUNK == 0:
            out.text = "".join(chars)
            task.progress(0.05 + 0.95 * len(chars) / length, f"{len(chars)}/{length} characters")
            yield out
    out.text = "".join(chars)
    yield out


def streamed(
    model: CharModel, start: Start, sampler: Sampler, params: dict[str, Any], task: TaskState
) -> Iterator[Preview | Generated]:
    """Previews of the new characters as they come, then the finished :class:`Generated`."""
    shown = 0
    done = Generated()
    for done in generate(
        model, start, sampler, params["seed"], params["length"], params["stop"], task
    ):
        if len(done.text) > shown:
            yield Preview("text", text=done.text[shown:], probs=done.probs[shown:])
            shown = len(done.text)
    yield done


def sampler_of(params: dict[str, Any], temperature: float | None = None) -> Sampler:
    t = params["temperature"] if temperature is None else temperature
    return Sampler(float(t), int(params["top_k"]), float(params["top_p"]))


def parse_temperatures(text: str) -> list[float]:
    try:
        temps = [float(t) for t in text.replace(";", ",").split(",") if t.strip()]
    except ValueError:
        raise JobError(f"temperatures: {text!r} is not a list like 0.2, 0.5, 1.0") from None
    if not temps or any(not 0 <= t <= 5 for t in temps):
        raise JobError("temperatures: give one or more numbers from 0 to 5, separated by commas")
    return temps


def seed_text_for(params: dict[str, Any], ctx: PluginContext) -> tuple[str, dict[str, Any]]:
    """The seed text and, for a random corpus line, where it came from."""
    if params["mode"] == "continue" or params["seed_source"] == "typed":
        return params["seed_text"], {}
    path = corpus_path(params["corpus"], ctx)
    try:
        text = read_text(path, errors="replace")  # a seed line may hold a U+FFFD: fine
    except CorpusError as exc:
        raise JobError(str(exc)) from None
    lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise JobError(f"{path}: no non-empty line to start from")
    number, line = lines[int(np.random.default_rng([params["seed"], 1]).integers(len(lines)))]
    return line + "\n", {"seed_line": {"file": str(path), "line": number}}


def corpus_path(given: str, ctx: PluginContext) -> Path:
    if given.strip():
        return Path(given.strip()).expanduser()
    recorded = ctx.card().get("data", {}).get("path") if ctx.model else None
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    raise JobError(
        "a random line needs a text file: set Corpus file (the model's training file is not "
        "on this computer)"
    )


def run(params: dict[str, Any], ctx: PluginContext, state: TaskState) -> Iterator[Any]:
    if params["stop"] not in STOPS:
        raise JobError(f"stop: {params['stop']!r} is not one of {', '.join(STOPS)}")
    comparing = params["mode"] == "compare temperatures"
    temperatures = parse_temperatures(params["temperatures"]) if comparing else []
    model = CharModel.from_context(ctx)
    seed_text, extra = seed_text_for(params, ctx)
    continuing = params["mode"] == "continue"
    start = start_from(model, seed_text, continuing, state)
    if start.encoded.changed:
        state.notice(f"Seed text: {start.encoded.report()}.")
        extra["seed_changes"] = {"mapped": start.encoded.mapped, "dropped": start.encoded.dropped}
    if comparing:
        yield from compare(model, start, params, temperatures, state, extra)
        return
    if start.shown:
        yield Preview("text", text=start.shown, probs=start.probs)
    done = Generated()
    for item in streamed(model, start, sampler_of(params), params, state):
        if isinstance(item, Generated):
            done = item
        else:
            yield item
    extra.update(generated_chars=len(done.text), stopped=done.stopped, seed_chars=len(start.shown))
    extra["cell_actions"] = CONTINUE_ACTIONS
    yield Result.of_text(start.shown + done.text, start.probs + done.probs, **extra)


def compare(
    model: CharModel,
    start: Start,
    params: dict[str, Any],
    temperatures: list[float],
    state: TaskState,
    extra: dict[str, Any],
) -> Iterator[Any]:
    """The same seed (and the same random stream) at each temperature, as labelled sections
    of one text: each section is exactly what 'generate' gives at that temperature."""
    text, probs = "", []
    sections = []
    for t in temperatures:
        head = ("\n\n" if text else "") + f"── temperature {t:g} ──\n"
        part, part_probs = head + start.shown, [NAN] * len(head) + start.probs
        yield Preview("text", text=part, probs=part_probs)
        done = Generated()
        for item in streamed(model, start, sampler_of(params, t), params, state):
            if isinstance(item, Generated):
                done = item
            else:
                yield item
        sections.append(
            {
                "temperature": t,
                "offset": len(text) + len(head),
                "generated_chars": len(done.text),
                "stopped": done.stopped,
            }
        )
        text += part + done.text
        probs += part_probs + done.probs
    yield Result.of_text(text, probs, sections=sections, **extra)
