"""Music from the transformer: compose from nothing, continue a MIDI file, or harmonise a
melody (the soprano tokens are fixed, alto, tenor and bass are sampled under the grammar's
masks).  Notes stream to the piano roll as they are generated.  numpy + ONNX Runtime only."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gdl_studio.core.host import JobError, PluginContext
from gdl_studio.core.imageio import open_midi
from gdl_studio.core.jobs import Cancelled, TaskState
from gdl_studio.core.results import Preview, Result

from .model import MusicModel, Stream
from .sampling import Sampler
from .tokenizers import BOS, BeatNote, ChoraleTokenizer, TokenError, Tokenizer, beat_notes

MODES = ("compose", "continue", "harmonise")
PREVIEW_EVERY = 64  # tokens between previews: a bar of the chorales, a few notes of a solo
DEFAULT_PROGRAMS = {"chorale": 52, "solo": 42, "general": 0}  # GM: choir aahs, cello, piano


def preview_notes(
    notes: list[BeatNote], tempo_bpm: float, program: int
) -> list[tuple[int, float, float, int, int, int]]:
    """Piano-roll notes (pitch, start s, end s, velocity, channel, program)."""
    spb = 60.0 / tempo_bpm
    return [(n.pitch, n.start * spb, n.end * spb, n.velocity, n.voice, program) for n in notes]


def input_notes(params: dict[str, Any]) -> list[BeatNote]:
    """The notes of the ``midi`` parameter's file (continue and harmonise need one)."""
    if not params.get("midi"):
        raise JobError(
            f"{params['mode']} needs a MIDI file: set 'MIDI file' (or drop one on the window; "
            "from the command line --input piece.mid)"
        )
    midi = open_midi(Path(params["midi"]))  # InputError: a one-line message for a bad file
    try:
        return beat_notes(midi)
    except TokenError as exc:
        raise JobError(f"{Path(params['midi']).name}: {exc}") from None


def program_of(params: dict[str, Any], tok: Tokenizer) -> int:
    program = int(params["program"])
    return program if program >= 0 else DEFAULT_PROGRAMS.get(tok.kind, 0)


UNITS = ("bars", "seconds")
BEATS_PER_BAR = 4  # the tokenizers write 4/4


@dataclass(frozen=True)
class Plan:
    prompt: list[int]  # ids after BOS that the model reads first
    max_tokens: int  # tokens to generate at the most
    soprano: list[int] | None  # harmonise: the fixed soprano id of each step
    beats: float | None  # stop once the new tokens reach this many beats (None: max_tokens)


def length_in_beats(params: dict[str, Any]) -> float:
    """The *Length* parameter in beats: bars of 4/4, or seconds at the chosen tempo."""
    unit = params.get("unit", "bars")
    if unit not in UNITS:
        raise JobError(f"unit: {unit!r} is not one of {', '.join(UNITS)}")
    length = float(params["length"])
    return length * BEATS_PER_BAR if unit == "bars" else length * float(params["tempo"]) / 60.0


def plan(params: dict[str, Any], tok: Tokenizer) -> Plan:
    mode = params["mode"]
    beats = length_in_beats(params)
    # A bound on the tokens; the length in beats stops generation first (a cycle of slack:
    # a length that is not a whole grid step ends with the step that crosses it).
    cap = math.ceil(beats * tok.max_tokens_per_beat()) + tok.period
    if mode == "compose":
        return Plan([], cap, None, beats)
    notes = input_notes(params)
    if mode == "continue":
        prompt = tok.encode_notes(notes)
        prompt = prompt[: len(prompt) - len(prompt) % tok.period]
        return Plan(prompt, cap, None, beats)
    if not isinstance(tok, ChoraleTokenizer):
        raise JobError("harmonise needs a chorale (four-voice) model; choose one under Model")
    steps = math.ceil(beats * tok.STEPS_PER_BEAT - 1e-9)
    soprano = [int(t) for t in tok.encode_melody(notes)][:steps]
    if not soprano:
        raise JobError("the melody has no notes to harmonise")
    return Plan([], 4 * len(soprano), soprano, None)


def generate(
    model: MusicModel,
    prompt: list[int],
    n: int,
    sampler: Sampler,
    seed: int,
    soprano: list[int] | None,
    state: TaskState,
    beats: float | None = None,
) -> Iterator[list[int]]:
    """Sample up to ``n`` ids after BOS + ``prompt``, stopping early at the end of the cycle
    that brings the new part to ``beats`` beats; yields all ids after BOS every
    PREVIEW_EVERY tokens and at the end.  With ``soprano``, every soprano token is taken
    from it instead."""
    tok = model.tokenizer
    rng = np.random.default_rng(seed)
    masks = [tok.allowed(p) for p in range(tok.period)]
    stream = Stream(model, np.array([BOS, *prompt]), state)
    done = 0.0  # beats written
    for i in range(n):
        state.check()
        phase = stream.phase
        if soprano is not None and phase == 0:
            token = soprano[i // 4]
        else:
            token = int(sampler.choose(stream.logits, rng, masks[phase])[0])
        gain = tok.beats_of(token, phase)
        if beats is not None and gain and phase != tok.period - 1 and done + gain >= beats - 1e-9:
            break  # an event that would begin at the length (general MIDI): the piece ends
        done += gain
        last = i + 1 >= n or (beats is not None and done >= beats - 1e-9)
        if last:
            stream.ids.append(token)  # no step for a token nothing follows
            break
        stream.push(token)
        if (i + 1) % PREVIEW_EVERY == 0:
            part = done / beats if beats else (i + 1) / n
            state.progress(min(part, 1.0), f"{i + 1} tokens, {done:g} beats")
            yield stream.ids[1:]
    yield stream.ids[1:]


def run(params: dict[str, Any], ctx: PluginContext, state: TaskState) -> Iterator[Any]:
    if params["mode"] not in MODES:
        raise JobError(f"mode: {params['mode']!r} is not one of {', '.join(MODES)}")
    model = MusicModel.from_context(ctx)
    tok = model.tokenizer
    todo = plan(params, tok)
    prompt = todo.prompt
    sampler = Sampler(float(params["temperature"]), int(params["top_k"]), float(params["top_p"]))
    tempo, program = float(params["tempo"]), program_of(params, tok)
    if prompt:
        yield Preview("midi", notes=preview_notes(tok.decode_notes(prompt), tempo, program))
    ids: list[int] = list(prompt)
    stopped = "length"
    try:
        for ids in generate(
            model, prompt, todo.max_tokens, sampler, params["seed"], todo.soprano, state, todo.beats
        ):
            yield Preview("midi", notes=preview_notes(tok.decode_notes(ids), tempo, program))
    except Cancelled:
        stopped = "cancelled"  # keep what was made: the piece so far is the result
    midi = tok.to_midi(ids, tempo, program)
    yield Result.of_midi(
        midi,
        tokenizer=tok.kind,
        prompt_tokens=len(prompt),
        generated_tokens=len(ids) - len(prompt),
        grammar_errors=tok.grammar_errors(ids),
        program=program,
        stopped=stopped,
    )
