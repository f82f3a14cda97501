"""Run the service with uvicorn: bind, serve, and on SIGTERM/SIGINT stop accepting, drain, exit 0.

uvicorn's graceful shutdown already stops accepting, lets in-flight requests finish, then runs the lifespan
shutdown (the batcher keeps scoring until then). After it returns it re-raises the signal it caught; we
install no-op handlers first so that re-raise ends the process with status 0 rather than "killed by SIGTERM"
(or a KeyboardInterrupt traceback).
"""

from __future__ import annotations

import logging
import signal
import socket

from serving.http.options import HttpOptions
from serving.session import ModelSession

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED = 0, 1
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def build_server(session: ModelSession, options: HttpOptions, **config: object):
    """A ``uvicorn.Server`` over :func:`serving.http.app.create_app` (not started)."""
    import uvicorn

    from serving.http.app import create_app

    app = create_app(session, options, **config)  # type: ignore[arg-type]
    cfg = uvicorn.Config(app, host=options.host, port=options.port, lifespan="on", log_config=None,
                         access_log=False, timeout_graceful_shutdown=None, server_header=False)
    return uvicorn.Server(cfg)


def serve(session: ModelSession, options: HttpOptions, sockets: list[socket.socket] | None = None,
          **app_config: object) -> int:
    """Serve until SIGTERM/SIGINT; the exit status (0 after a clean drain). ``app_config`` goes to ``create_app``."""
    server = build_server(session, options, **app_config)
    if options.host not in LOOPBACK and options.api_key is None:
        logger.warning("listening on %s without an API key: anyone who reaches the port can use it "
                       "(set AST_SAMPLEID_API_KEY)", options.host)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)  # see the module docstring
    try:
        server.run(sockets=sockets)
    except SystemExit as stop:  # uvicorn exits 1 when it cannot bind (it has logged the one-line reason)
        return int(stop.code or EXIT_FAILED)
    return EXIT_OK if server.started else EXIT_FAILED
