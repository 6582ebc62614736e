"""`basintui serve [PRESET] [--port N]`: the same app in a browser via textual-serve, bound to localhost.

Reach it from another machine over an SSH tunnel (`ssh -L 8000:localhost:8000 host`); never bind 0.0.0.0.
"""

from __future__ import annotations

import shlex
import sys

HOST = "localhost"


def command_for(preset: str) -> str:
    """The command textual-serve runs for each browser session."""
    return f"{shlex.quote(sys.executable)} -m basintui.cli {shlex.quote(preset)}"


def serve(preset: str, port: int) -> int:
    from ..config import PresetError, load_preset

    try:
        load_preset(preset)
    except PresetError as exc:
        sys.stderr.write(f"basintui: error: {exc}\n")
        return 2
    try:
        from textual_serve.server import Server
    except ImportError:
        sys.stderr.write("basintui: error: serving needs textual-serve: pip install textual-serve\n")
        return 1
    if not 0 < port < 65536:
        sys.stderr.write(f"basintui: error: --port {port} is not a port number (1-65535)\n")
        return 2
    server = Server(command_for(preset), host=HOST, port=port, title=f"basintui: {preset}")
    sys.stderr.write(f"basintui: serving the app on http://{HOST}:{port} (localhost only; ctrl+c stops)\n")
    try:
        server.serve()
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        sys.stderr.write(f"basintui: error: cannot serve on {HOST}:{port}: {exc}\n")
        return 1
    return 0
