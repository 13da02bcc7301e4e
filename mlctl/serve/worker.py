"""One worker's serving loop: mlctl's own HTTP layer (``mlctl.serve.http``), or uvicorn without httptools.

Signals (the supervisor relays them): SIGTERM/SIGINT stop accepting, close idle connections, let
requests in progress finish (up to 30 s), then return; SIGUSR1 stops accepting and marks the app
draining (``/readyz`` 503) while open connections keep being served (zero-downtime updates);
SIGUSR2 writes the buffered model data rows, on a thread (``POST /-/mlctl/model-data/flush``,
``mlctl.serve.frontends.internal``).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
from pathlib import Path
from typing import Any

GRACEFUL_S = 30.0  # longest wait for requests in progress on SIGTERM


def serve(app: Any, sockets: list[socket.socket], certfile: Path | None, keyfile: Path | None) -> None:
    """Serve ``app`` (a ``ScoringApp``) on ``sockets`` until SIGTERM/SIGINT."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        _serve_uvicorn(app, sockets, certfile, keyfile)
        return
    from mlctl.serve.http import new_loop

    context = None
    if certfile is not None and keyfile is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
    loop = new_loop()()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_main(app, sockets, context))
    finally:
        loop.close()


async def _main(app: Any, sockets: list[socket.socket], context: ssl.SSLContext | None) -> None:
    from mlctl.serve.http import HttpServer

    server = HttpServer(app, ssl_context=context)
    await server.listen(sockets)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def stop_accepting() -> None:
        app.draining = True
        server.close()

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, stop_accepting)
    loop.add_signal_handler(signal.SIGUSR2, _flush_on_a_thread, app)
    await stop.wait()
    app.draining = True
    await server.drain(GRACEFUL_S)


def _flush_on_a_thread(app: Any) -> None:
    """SIGUSR2: flush this worker's model data rows off the event loop, then record the answer."""
    from mlctl.serve.frontends.internal import flush_this_worker

    if app.metrics is not None:
        asyncio.get_running_loop().run_in_executor(None, flush_this_worker, app.metrics)


def _serve_uvicorn(app: Any, sockets: list[socket.socket], certfile: Path | None, keyfile: Path | None) -> None:
    import uvicorn

    tls = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)} if certfile else {}
    config = uvicorn.Config(
        app,
        loop=_loop(),
        http="h11",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=int(GRACEFUL_S),
        **tls,  # type: ignore[arg-type]
        log_config=None,
    )
    _drainable_server_class()(config, app).run(sockets=sockets)


def _drainable_server_class() -> type:
    import uvicorn

    class DrainableServer(uvicorn.Server):
        """uvicorn's server, plus SIGUSR1: stop accepting, keep serving open connections."""

        def __init__(self, config: Any, app: Any) -> None:
            super().__init__(config)
            self.scoring_app = app

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGUSR1, self.stop_accepting)
            loop.add_signal_handler(signal.SIGUSR2, _flush_on_a_thread, self.scoring_app)

        def stop_accepting(self) -> None:
            self.scoring_app.draining = True
            for server in self.servers:
                server.close()

    return DrainableServer


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"
