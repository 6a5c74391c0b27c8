"""Serving the workbench: a socket bound here (so that a busy port is one clear line), uvicorn on it."""

from __future__ import annotations

import ipaddress
import socket
import threading
import webbrowser

import uvicorn

from extract.errors import InputError
from extract.review.app import LOOPBACK, create_app
from extract.review.workbench import Workbench


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in LOOPBACK


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise InputError(f"cannot serve on {host}:{port}: {error.strerror or error}; pass another --port") from None
    sock.listen(128)  # connections made before uvicorn starts wait instead of being refused
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def server(workbench: Workbench, sock: socket.socket) -> uvicorn.Server:
    host = sock.getsockname()[0]
    config = uvicorn.Config(create_app(workbench, host), log_level="warning", access_log=False, lifespan="off")
    return uvicorn.Server(config)


def serve(workbench: Workbench, sock: socket.socket, open_browser: bool) -> None:
    """Serve until interrupted; open the browser on the trial list first, where there is one."""
    if open_browser:
        threading.Timer(0.5, _open, [url_of(sock) + "/"]).start()
    server(workbench, sock).run(sockets=[sock])


def _open(url: str) -> None:
    try:
        webbrowser.get().open(url)
    except webbrowser.Error:
        pass  # no browser here (a server, CI): the address is printed
