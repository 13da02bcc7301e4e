"""Key authentication of the scoring route, as Azure ML web services with ``auth_enabled``.

Clients send ``Authorization: Bearer KEY``; a primary and a secondary key are valid (rotate one
while clients use the other). Keys live in a JSON file ``{"primary": ..., "secondary": ...}``
outside the spec (mode 0600), re-read when it changes, so ``mlctl service keys --regenerate``
takes effect without a restart. Comparison is constant-time (``hmac.compare_digest``), and both
keys are always compared.
"""

from __future__ import annotations

import hmac
import json
import os
import time
from pathlib import Path

_RECHECK_S = 1.0  # how often the key file's mtime is looked at


class KeyStore:
    """The valid keys of one service.

    Args:
        path: the keys file.

    Raises:
        OSError, ValueError: the file cannot be read or is not the expected JSON.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: tuple[bytes, ...] = ()
        self._mtime = -1.0
        self._checked = 0.0
        self._load()

    def allows(self, authorization: bytes | None) -> bool:
        """Whether an ``Authorization`` header value carries a valid key."""
        self._maybe_reload()
        if not authorization or not authorization[:7].lower() == b"bearer ":
            return False
        given = authorization[7:].strip()
        valid = False
        for key in self._keys:  # compare with every key, whatever matched, in constant time
            valid |= hmac.compare_digest(given, key)
        return valid

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < _RECHECK_S:
            return
        self._checked = now
        try:
            if os.stat(self.path).st_mtime != self._mtime:
                self._load()
        except (OSError, ValueError):
            pass  # keep the keys we have: a half-written or missing file must not open the door

    def _load(self) -> None:
        mtime = os.stat(self.path).st_mtime
        data = json.loads(self.path.read_text())
        keys = tuple(str(data[name]).encode() for name in ("primary", "secondary") if data.get(name))
        if not keys:
            raise ValueError(f"{self.path} holds no key")
        self._keys, self._mtime = keys, mtime
