"""Typed parameter specs: one description drives validation, the CLI and the generated panel."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PARAM_TYPES = ("int", "float", "choice", "bool", "seed", "text", "image", "midi", "mask")
FILE_TYPES = ("image", "midi", "mask")
SEED_MAX = 2**32 - 1


class ParamError(ValueError):
    """A parameter value that does not fit its spec; the message is shown to the user as is."""


@dataclass(frozen=True)
class ParamSpec:
    """One typed parameter of a plugin, read from its manifest."""

    name: str
    type: str
    default: Any = None
    label: str = ""
    help: str = ""
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False
    multiline: bool = False
    choices_from: str = ""  # a choice whose options come from the model's extras[<this>]
    # Shown and accepted only for models whose extras.kind is one of these (empty: for all),
    # e.g. the style plugin's classic-mode weights.
    for_kinds: tuple[str, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict)
    # An int's name for each value from min to max (e.g. General MIDI instruments): the panel
    # lists the names, and a name is accepted wherever the number is (--set program=Cello).
    value_names: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def coerce(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type, or raise :class:`ParamError`.

        Strings are accepted for every type, so that ``--set name=value`` works from the CLI.
        """
        if value is None or (isinstance(value, str) and value == "" and self.type in FILE_TYPES):
            if self.optional or self.type in FILE_TYPES:
                return None
            raise ParamError(f"{self.name}: a value is required")
        kind = self.type
        out: Any
        try:
            if kind == "int" and self.value_names and isinstance(value, str):
                out = self._named_int(value)
            elif kind == "int" or kind == "seed":
                out = _to_int(value)
            elif kind == "float":
                out = float(value)
                if not math.isfinite(out):
                    raise ParamError(f"{self.name}: {value!r} is not a finite number")
            elif kind == "bool":
                out = _to_bool(value)
            elif kind == "choice":
                out = str(value)
                if out not in self.choices:
                    raise ParamError(
                        f"{self.name}: {out!r} is not one of {', '.join(self.choices)}"
                    )
            elif kind == "text":
                out = str(value)
            elif kind in FILE_TYPES:
                out = str(Path(value))
            else:  # pragma: no cover - manifests are validated before this
                raise ParamError(f"{self.name}: unknown type {kind}")
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ParamError):
                raise
            raise ParamError(f"{self.name}: {value!r} is not a valid {kind}") from None
        if kind in ("int", "float"):
            if self.min is not None and out < self.min:
                raise ParamError(f"{self.name}: {out} is below the minimum {_num(self.min)}")
            if self.max is not None and out > self.max:
                raise ParamError(f"{self.name}: {out} is above the maximum {_num(self.max)}")
        if kind == "seed" and not 0 <= out <= SEED_MAX:
            raise ParamError(f"{self.name}: a seed is a whole number from 0 to {SEED_MAX}")
        return out

    def value_name(self, value: int) -> str | None:
        """The name of ``value`` (value_names), or None."""
        index = value - int(self.min or 0)
        return (
            self.value_names[index]
            if self.value_names and 0 <= index < len(self.value_names)
            else None
        )

    def _named_int(self, text: str) -> int:
        """A number, or one of value_names (any case)."""
        try:
            return _to_int(text)
        except ValueError:
            pass
        wanted = text.strip().lower()
        for i, name in enumerate(self.value_names):
            if name.strip().lower() == wanted:
                return int(self.min or 0) + i
        raise ParamError(f"{self.name}: {text!r} is neither a number nor one of its names "
                         f"(e.g. {self.value_names[0]!r})")  # fmt: skip


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    if isinstance(value, str):
        return int(value.strip(), 0) if value.strip().lower().startswith("0x") else int(value)
    return int(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def random_seed() -> int:
    """A fresh seed for a parameter left unset (the value used is always recorded)."""
    return random.SystemRandom().randint(0, SEED_MAX)


def resolve_params(specs: tuple[ParamSpec, ...], given: dict[str, Any]) -> dict[str, Any]:
    """Validate ``given`` against ``specs`` and fill in defaults; unknown names are errors.

    Seeds left unset (or set to ``-1``/``"random"``) are drawn here, so the value actually used
    is in the returned dict and ends up in the result's provenance.
    """
    by_name = {s.name: s for s in specs}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        known = ", ".join(by_name) or "none"
        raise ParamError(f"unknown parameter {unknown[0]!r} (this plugin has: {known})")
    out: dict[str, Any] = {}
    for spec in specs:
        value = given.get(spec.name, spec.default)
        if spec.type == "seed" and (
            value is None or str(value).strip().lower() in ("-1", "random")
        ):
            out[spec.name] = random_seed()
            continue
        out[spec.name] = spec.coerce(value)
    return out
