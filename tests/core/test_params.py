"""Typed parameters: coercion from CLI strings, ranges, spellings, seeds and resolve_params."""

from __future__ import annotations

import pytest

from gdl_studio.core import params as params_mod
from gdl_studio.core.params import SEED_MAX, ParamError, ParamSpec, resolve_params

INT = ParamSpec("steps", "int", default=20, min=1, max=100)
FLOAT = ParamSpec("strength", "float", default=0.5, min=0.0, max=1.5)
CHOICE = ParamSpec("sampler", "choice", default="ddim", choices=("ddim", "euler"))
BOOL = ParamSpec("tile", "bool", default=False)
SEED = ParamSpec("seed", "seed")
TEXT = ParamSpec("prompt", "text", default="a cat")
IMAGE = ParamSpec("init", "image", optional=True)
MIDI = ParamSpec("melody", "midi")
MASK = ParamSpec("area", "mask")


@pytest.mark.parametrize(
    ("spec", "raw", "expected"),
    [
        (INT, "42", 42),
        (INT, " 7 ", 7),
        (INT, "0x10", 16),
        (INT, 3.0, 3),
        (FLOAT, "0.25", 0.25),
        (FLOAT, "1", 1.0),
        (FLOAT, 1, 1.0),
        (CHOICE, "euler", "euler"),
        (BOOL, "true", True),
        (SEED, "123", 123),
        (SEED, str(SEED_MAX), SEED_MAX),
        (TEXT, "a dog", "a dog"),
        (TEXT, 12, "12"),
        (IMAGE, "in/x.png", "in/x.png"),
        (MIDI, "tune.mid", "tune.mid"),
        (MASK, "m.png", "m.png"),
    ],
)
def test_coerce_from_strings(spec: ParamSpec, raw: object, expected: object) -> None:
    out = spec.coerce(raw)
    assert out == expected
    assert type(out) is type(expected)


def test_int_range_messages_name_the_limit() -> None:
    with pytest.raises(ParamError, match=r"steps: 0 is below the minimum 1$"):
        INT.coerce("0")
    with pytest.raises(ParamError, match=r"steps: 101 is above the maximum 100$"):
        INT.coerce("101")
    assert INT.coerce("1") == 1 and INT.coerce("100") == 100


def test_float_range_messages_name_the_limit() -> None:
    with pytest.raises(ParamError, match=r"below the minimum 0$"):
        FLOAT.coerce("-0.1")
    with pytest.raises(ParamError, match=r"above the maximum 1\.5$"):
        FLOAT.coerce("1.6")


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "Infinity", float("nan")])
def test_float_refuses_non_finite(raw: object) -> None:
    unbounded = ParamSpec("x", "float", default=0.0)
    with pytest.raises(ParamError, match=r"not a finite number"):
        unbounded.coerce(raw)


@pytest.mark.parametrize("raw", ["1.5", 1.5, "abc", "", True, "1e3"])
def test_int_refuses_non_integers(raw: object) -> None:
    with pytest.raises(ParamError, match=r"steps: .* is not a valid int"):
        INT.coerce(raw)


def test_float_refuses_garbage() -> None:
    with pytest.raises(ParamError, match=r"is not a valid float"):
        FLOAT.coerce("half")


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", " yes ", "on", "On", True, 1])
def test_bool_true_spellings(raw: object) -> None:
    assert BOOL.coerce(raw) is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "OFF", False, 0])
def test_bool_false_spellings(raw: object) -> None:
    assert BOOL.coerce(raw) is False


@pytest.mark.parametrize("raw", ["maybe", "2", 2, "", "y"])
def test_bool_refuses_others(raw: object) -> None:
    with pytest.raises(ParamError, match=r"tile: .* is not a valid bool"):
        BOOL.coerce(raw)


def test_choice_refuses_unknown_and_lists_choices() -> None:
    with pytest.raises(ParamError, match=r"sampler: 'heun' is not one of ddim, euler"):
        CHOICE.coerce("heun")
    with pytest.raises(ParamError):
        CHOICE.coerce("DDIM")  # choices are exact


@pytest.mark.parametrize("raw", ["-1", -5, str(SEED_MAX + 1), "x"])
def test_seed_range(raw: object) -> None:
    with pytest.raises(ParamError, match=r"seed"):
        SEED.coerce(raw)


def test_missing_values() -> None:
    with pytest.raises(ParamError, match=r"steps: a value is required"):
        INT.coerce(None)
    with pytest.raises(ParamError, match=r"prompt: a value is required"):
        TEXT.coerce(None)
    # File parameters may be empty: no file given.
    assert IMAGE.coerce(None) is None
    assert MIDI.coerce("") is None
    assert ParamSpec("n", "int", optional=True).coerce(None) is None


def test_title() -> None:
    assert ParamSpec("init_image", "image").title == "Init image"
    assert ParamSpec("x", "int", label="The X").title == "The X"


SPECS = (INT, FLOAT, CHOICE, BOOL, SEED, TEXT, IMAGE)


def test_resolve_fills_defaults_and_draws_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(params_mod, "random_seed", lambda: 4242)
    out = resolve_params(SPECS, {"steps": "30", "tile": "yes"})
    assert out == {
        "steps": 30,
        "strength": 0.5,
        "sampler": "ddim",
        "tile": True,
        "seed": 4242,
        "prompt": "a cat",
        "init": None,
    }


@pytest.mark.parametrize("unset", [None, -1, "-1", "random", " Random "])
def test_resolve_draws_seed_when_unset(unset: object) -> None:
    given = {} if unset is None else {"seed": unset}
    seeds = {resolve_params((SEED,), given)["seed"] for _ in range(5)}
    assert all(isinstance(s, int) and 0 <= s <= SEED_MAX for s in seeds)
    assert len(seeds) > 1  # really drawn, not a constant


def test_resolve_keeps_given_seed() -> None:
    assert resolve_params((SEED,), {"seed": "77"}) == {"seed": 77}
    assert resolve_params((SEED,), {"seed": 0}) == {"seed": 0}


def test_random_seed_in_range() -> None:
    for _ in range(20):
        assert 0 <= params_mod.random_seed() <= SEED_MAX


def test_resolve_refuses_unknown_names() -> None:
    with pytest.raises(ParamError) as info:
        resolve_params(SPECS, {"stepz": 3})
    msg = str(info.value)
    assert "unknown parameter 'stepz'" in msg
    assert "steps, strength" in msg
    with pytest.raises(ParamError, match=r"\(this plugin has: none\)"):
        resolve_params((), {"x": 1})


def test_resolve_validates_values() -> None:
    with pytest.raises(ParamError, match=r"above the maximum 100"):
        resolve_params(SPECS, {"steps": 500})
