"""Reliability run of the scoring server: many mixed requests, every status checked (a benchmark).

    python bench/reliability.py [--requests 100000] [--concurrency 32] [--time-limit 900]

Sends, over keep-alive connections on 127.0.0.1, a mix of valid bodies (200), malformed JSON
(500), bodies over the size limit (413), bodies that make run() raise (500), slow run() calls
past the timeout (504), and clients that hang up mid-request (no answer). Then checks that no
worker crashed (same PIDs) and how much the server's memory (RSS of its process tree) grew
after warm-up. Prints the numbers; the goal is 0 wrong statuses, 0 crashes, < 10 MB growth.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import time
from pathlib import Path

from _server import free_port, start_server, wait_ready

REPO = Path(__file__).resolve().parent.parent
MAX_BODY = 65536
# kind -> (share of requests, expected status; 0: the client hangs up, no answer)
MIX = {
    "valid": (0.855, 200),
    "malformed": (0.05, 500),
    "oversize": (0.03, 413),
    "raise": (0.04, 500),
    "slow": (0.0015, 504),
    "disconnect": (0.0235, 0),
}


def body_for(kind: str, n: int) -> bytes:
    """The request body of one request of ``kind``."""
    if kind == "malformed":
        return b'{"n": 1,,}'
    if kind == "oversize":
        return json.dumps({"n": n, "pad": "x" * (MAX_BODY + 10)}).encode()
    if kind == "raise":
        return json.dumps({"n": n, "raise": True}).encode()
    if kind == "slow":
        return json.dumps({"n": n, "sleep": 0.3}).encode()
    return json.dumps({"n": n, "data": [[1, 2, 3]]}).encode()


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, kind: str, n: int) -> int:
        """Send one request; returns the status (0 when this client hung up on purpose)."""
        body = body_for(kind, n)
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = (
            f"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        if kind == "disconnect":
            self.writer.write(head.encode() + body[: len(body) // 2])
            await self.writer.drain()
            self.close()
            return 0
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        return await self._response()

    async def _response(self) -> int:
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return int(lines[0].split()[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def load(port: int, total: int, concurrency: int, deadline: float) -> tuple[collections.Counter[str], int]:
    """Send ``total`` requests; returns counts of (kind, outcome) and the number sent."""
    kinds, weights = list(MIX), [share for share, _ in MIX.values()]
    outcomes: collections.Counter[str] = collections.Counter()
    sent = 0
    rng = random.Random(42)

    async def worker() -> None:
        nonlocal sent
        client = Client(port)
        while sent < total and time.monotonic() < deadline:
            sent += 1
            kind = rng.choices(kinds, weights)[0]
            try:
                status = await client.request(kind, sent)
            except (OSError, asyncio.IncompleteReadError) as error:
                client.close()
                outcomes[f"{kind}: connection error {type(error).__name__}"] += 1
                continue
            outcomes[f"{kind}: {'ok' if status == MIX[kind][1] else f'WRONG {status}'}"] += 1
        client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes, sent


def tree(pid: int) -> list[int]:
    """``pid`` and its children (the workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def rss_mib(pids: list[int]) -> float:
    """Summed resident set size, MiB."""
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--time-limit", type=float, default=900.0)
    args = parser.parse_args()
    port = free_port()
    server = start_server(
        REPO / "bench/reliability_score.py", port, "--timeout-ms", "100", "--max-request-bytes", str(MAX_BODY)
    )
    try:
        wait_ready(port)
        asyncio.run(load(port, 2000, args.concurrency, time.monotonic() + 60))  # warm-up
        pids_before, rss_before = tree(server.pid), rss_mib(tree(server.pid))
        started = time.monotonic()
        outcomes, sent = asyncio.run(load(port, args.requests, args.concurrency, started + args.time_limit))
        elapsed = time.monotonic() - started
        pids_after, rss_after = tree(server.pid), rss_mib(tree(server.pid))
    finally:
        server.terminate()
        server.wait(60)
    wrong = sum(count for outcome, count in outcomes.items() if "ok" not in outcome.split(": ")[1])
    print(f"requests: {sent} in {elapsed:.1f} s ({sent / elapsed:.0f}/s), concurrency {args.concurrency}")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome:40} {count:7}")
    print(f"wrong statuses or connection errors: {wrong}")
    print(f"workers crashed: {len(set(pids_before) ^ set(pids_after)) // 2} (pids {pids_before} -> {pids_after})")
    print(f"RSS of the server tree: {rss_before:.1f} MiB -> {rss_after:.1f} MiB ({rss_after - rss_before:+.1f} MiB)")


if __name__ == "__main__":
    main()
