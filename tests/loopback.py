"""A loopback HTTP server for tests that download (``models.hub``, ``--weights URL``, ``import ast URL``).

Nothing leaves 127.0.0.1; the port is picked by the OS::

    with loopback_server(folder_handler(tmp_path)) as base:  # base = "http://127.0.0.1:PORT"
        resolve_weights(f"{base}/w.pth")
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

HandlerFactory = Callable[..., socketserver.BaseRequestHandler]


class QuietFolderHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the files of one folder without logging each request."""

    def log_message(self, *args: object) -> None:  # keep the test output quiet
        return


def folder_handler(folder: Path) -> HandlerFactory:
    """A handler factory serving ``folder``'s files (``GET /<name>``)."""
    return functools.partial(QuietFolderHandler, directory=str(folder))


@contextlib.contextmanager
def loopback_server(handler: HandlerFactory) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 in a daemon thread; yield the base URL; shut down on exit."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
