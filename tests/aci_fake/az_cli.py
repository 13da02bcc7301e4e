"""A stand-in ``az`` executable: answers ``az account get-access-token --output json`` as the
Azure CLI does (``accessToken``, ``expiresOn`` as a naive local time, ``expires_on`` in epoch
seconds, ``subscription``, ``tenant``, ``tokenType``), so ``DefaultAzureCredential`` runs unchanged
with ``AZURE_TOKEN_CREDENTIALS=AzureCliCredential`` (azure-identity's switch keeping only that
credential: without it the chain would probe the instance metadata endpoint, which is off loopback).
The denied variant fails as ``az`` does when nobody is logged in."""

from __future__ import annotations

import sys
from pathlib import Path

_SCRIPT = """#!{python}
import datetime, json, sys, time
args = sys.argv[1:]
if {denied}:
    sys.stderr.write("ERROR: Please run 'az login' to setup account.\\n")
    sys.exit(1)
if args[:4] != ["account", "get-access-token", "--output", "json"]:
    sys.stderr.write("stand-in az: only `account get-access-token --output json` is answered\\n")
    sys.exit(2)
expires = int(time.time()) + 3600
print(json.dumps({{
    "accessToken": {token!r},
    "expiresOn": datetime.datetime.fromtimestamp(expires).strftime("%Y-%m-%d %H:%M:%S.%f"),
    "expires_on": expires,
    "subscription": {subscription!r},
    "tenant": "00000000-0000-0000-0000-0000000000aa",
    "tokenType": "Bearer",
}}, indent=2))
"""


def write_az(folder: Path, *, token: str, subscription: str, denied: bool = False) -> Path:
    """Write ``folder/az`` (mode 0700); returns ``folder`` (put it first on PATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "az"
    text = _SCRIPT.format(python=sys.executable, denied=denied, token=token, subscription=subscription)
    script.write_text(text)
    script.chmod(0o700)
    return folder
