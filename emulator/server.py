"""Serving an app on waitress (a production WSGI server), in the foreground or a thread."""

from __future__ import annotations

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

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        self._server.run()

    def start(self) -> AppServer:
        self._thread = threading.Thread(target=self.serve_forever, name="tiw-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close open connections, and wait for the serving thread."""
        server = self._server

        def close_everything() -> None:
            for channel in list(server._map.values()):
                channel.close()

        if self._thread is not None and self._thread.is_alive():
            # Sockets belong to the serving loop: close them from inside it, via its trigger.
            server.trigger.pull_trigger(close_everything)
            self._thread.join(timeout=5)
        else:
            close_everything()
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=2)
