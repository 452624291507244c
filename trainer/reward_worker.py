"""The child side of ``isolation: process`` user rewards (see ``trainer.rewards``).

Standard library only, so the spawned worker starts in well under a second (importing
``trainer.rewards`` would pull in torch through ``regulator``). The user function receives an
object with the ``prompt``, ``answer`` and ``meta`` attributes of an ``Example``.
"""

from __future__ import annotations

import pkgutil
from types import SimpleNamespace
from typing import Any


def resolve(target: str) -> Any:
    """``module:function`` -> the function (errors are reported by the parent's config check)."""
    return pkgutil.resolve_name(target)


def serve(conn: Any, target: str, params: dict[str, Any]) -> None:  # pragma: no cover - child
    """Answer ``(completion, prompt, answer, meta)`` messages with ``("ok", value)`` or
    ``("error", message)`` until ``None`` arrives."""
    fn = resolve(target)
    conn.send(("ready", None))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        completion, prompt, answer, meta = msg
        try:
            value = fn(completion, SimpleNamespace(prompt=prompt, answer=answer, meta=meta), **params)
            conn.send(("ok", value))
        except BaseException as e:  # reported to the parent
            conn.send(("error", f"{type(e).__name__}: {e}"))
