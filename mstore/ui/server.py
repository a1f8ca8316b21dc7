"""Serve the app with uvicorn on a socket bound here, so `--port 0` can print the port it got."""

from __future__ import annotations

import socket
import webbrowser
from collections.abc import Callable
from pathlib import Path

import uvicorn

from ..repository import Repository
from .app import LOOPBACK_HOSTS, create_app

DEFAULT_HOST = "127.0.0.1"


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def allowed_hosts(host: str) -> list[str]:
    """The Host headers to answer: on loopback, the loopback names and the address served (127.0.0.2 too,
    whose URL we print); elsewhere any (the user chose to serve the network)."""
    if not is_loopback(host):
        return ["*"]
    return [*LOOPBACK_HOSTS, *([host] if host not in LOOPBACK_HOSTS else [])]


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    root: str | Path | Repository, host: str, port: int, *, open_browser: bool, announce: Callable[[str], None]
) -> None:
    """Open the store (or serve a Repository: a remote browsed read-only), bind, call `announce(url)`, then
    serve until interrupted."""
    app = create_app(root, allowed_hosts=allowed_hosts(host))
    sock = bind(host, port)
    url = url_of(host, sock.getsockname()[1])
    announce(url)
    if open_browser:
        webbrowser.open(url)
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False, lifespan="off")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
