"""Music from the transformer: compose from nothing, continue a MIDI file, or harmonise a
melody (the soprano tokens are fixed, alto, tenor and bass are sampled under the grammar's
masks).  Notes stream to the piano roll as they are generated.  numpy + ONNX Runtime only."""

from __future__ import annotations

from collections.abc import Iterator
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
DEFAULT_PROGRAMS = {"chorale": 52, "solo": 42}  # General MIDI: choir aahs, cello


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


def plan(params: dict[str, Any], tok: Tokenizer) -> tuple[list[int], int, list[int] | None]:
    """(prompt ids after BOS, tokens to generate, fixed soprano ids per step or None)."""
    mode = params["mode"]
    bars = int(params["length"])
    if mode == "compose":
        return [], bars * tok.steps_per_bar(), None
    notes = input_notes(params)
    if mode == "continue":
        prompt = tok.encode_notes(notes)
        prompt = prompt[: len(prompt) - len(prompt) % tok.period]
        return prompt, bars * tok.steps_per_bar(), None
    if not isinstance(tok, ChoraleTokenizer):
        raise JobError("harmonise needs a chorale (four-voice) model; choose one under Model")
    soprano = [int(t) for t in tok.encode_melody(notes)][: bars * 16]
    if not soprano:
        raise JobError("the melody has no notes to harmonise")
    return [], 4 * len(soprano), soprano


def generate(
    model: MusicModel,
    prompt: list[int],
    n: int,
    sampler: Sampler,
    seed: int,
    soprano: list[int] | None,
    state: TaskState,
) -> Iterator[list[int]]:
    """Sample ``n`` ids after BOS + ``prompt``; yields all ids after BOS every PREVIEW_EVERY
    tokens and at the end.  With ``soprano``, every soprano token is taken from it instead."""
    tok = model.tokenizer
    rng = np.random.default_rng(seed)
    masks = [tok.allowed(p) for p in range(tok.period)]
    stream = Stream(model, np.array([BOS, *prompt]), state)
    for i in range(n):
        state.check()
        phase = stream.phase
        if soprano is not None and phase == 0:
            token = soprano[i // 4]
        else:
            token = int(sampler.choose(stream.logits, rng, masks[phase])[0])
        if i + 1 < n:
            stream.push(token)
        else:
            stream.ids.append(token)
        if (i + 1) % PREVIEW_EVERY == 0 and i + 1 < n:
            state.progress((i + 1) / n, f"{i + 1}/{n} tokens")
            yield stream.ids[1:]
    yield stream.ids[1:]


def run(params: dict[str, Any], ctx: PluginContext, state: TaskState) -> Iterator[Any]:
    if params["mode"] not in MODES:
        raise JobError(f"mode: {params['mode']!r} is not one of {', '.join(MODES)}")
    model = MusicModel.from_context(ctx)
    tok = model.tokenizer
    prompt, n, soprano = plan(params, tok)
    sampler = Sampler(float(params["temperature"]), int(params["top_k"]), float(params["top_p"]))
    tempo, program = float(params["tempo"]), program_of(params, tok)
    if prompt:
        yield Preview("midi", notes=preview_notes(tok.decode_notes(prompt), tempo, program))
    ids: list[int] = list(prompt)
    stopped = "length"
    try:
        for ids in generate(model, prompt, n, sampler, params["seed"], soprano, state):
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
