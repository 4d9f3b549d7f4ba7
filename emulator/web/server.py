"""Serving an app on waitress (a production WSGI server), in the foreground or a thread."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from flask import Flask
from waitress.server import create_server


class AppServer:
    """An app on waitress bound to host:port (port 0 picks a free one)."""

    def __init__(
        self, app: Flask, *, host: str = "127.0.0.1", port: int = 0, threads: int = 8
    ) -> None:
        self.app = app
        self._server: Any = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="tiw-emulator",
            asyncore_loop_timeout=0.2,
            channel_timeout=60,
            clear_untrusted_proxy_headers=True,
        )
        self.host = host
        self.port = int(self._server.effective_port)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve until stop() (or Ctrl-C in the foreground); sockets are closed by this loop."""
        server = self._server
        try:
            while not self._stopping.is_set() and server._map:
                server.asyncore.loop(
                    timeout=server.adj.asyncore_loop_timeout,
                    map=server._map,
                    use_poll=server.adj.asyncore_use_poll,
                    count=1,
                )
        finally:
            self._close_sockets()

    def start(self) -> AppServer:
        self._thread = threading.Thread(target=self.serve_forever, name="tiw-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close open connections, and wait for the serving thread.

        The serving loop checks the stop flag after every poll, so stopping never depends on
        waitress's wake-up pipe: pulling it only makes the stop immediate.
        """
        self._stopping.set()
        if self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(OSError):
                self._server.trigger.pull_trigger()
            self._thread.join(timeout=5)
        else:
            self._close_sockets()
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=2)

    def _close_sockets(self) -> None:
        for channel in list(self._server._map.values()):
            # One broken channel (e.g. a trigger whose fd is already gone) must not keep the
            # others, the listening socket among them, open.
            with contextlib.suppress(OSError):
                channel.close()
