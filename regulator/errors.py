"""Errors that carry a key path, so users see exactly which setting is wrong."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

_NOT_GIVEN = object()


class ConfigError(ValueError):
    """A user-facing configuration error: names the key, what was expected and what was given.

    The CLI turns it into a one-line message and exit code 2.
    """

    def __init__(self, key: str, expected: str, given: object = _NOT_GIVEN, *, hint: str = "") -> None:
        self.key = key
        self.expected = expected
        self.given = None if given is _NOT_GIVEN else given
        self._given = given
        self.hint = hint
        msg = f"{key}: expected {expected}"
        if given is not _NOT_GIVEN:  # a given None is shown as "got None" (YAML null)
            msg += f", got {given!r}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)

    def with_key(self, key: str) -> ConfigError:
        """The same error reported under another (usually longer) key path."""
        return ConfigError(key, self.expected, self._given, hint=self.hint)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A 'did you mean X?' hint for an unknown name, or '' when nothing is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def unknown_name_error(key: str, name: object, choices: Iterable[str], what: str) -> ConfigError:
    """ConfigError for a name that is not among `choices`, listing them with a did-you-mean."""
    choices = sorted(choices)
    hint = did_you_mean(str(name), choices)
    return ConfigError(key, f"one of the {what}: {', '.join(choices)}", name, hint=hint)
