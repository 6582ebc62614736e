"""`basintui serve [PRESET] [--port N] [--allow-python-models]`: the app in a browser via textual-serve,
bound to localhost.

Reach it from another machine over an SSH tunnel (`ssh -L 8000:localhost:8000 host`); never bind 0.0.0.0.

Processes. Each browser page gets its own app process, started in a new session (its own process
group) so that the app and every process it starts (engine processes, multiprocessing's resource
tracker) can be ended together. When the page closes, the app is asked to quit; if it has not ended
within QUIT_GRACE_S (it may still be starting, not yet reading its input), its group gets SIGTERM,
then SIGKILL TERM_GRACE_S later. When the server stops (Ctrl-C, SIGTERM), every app group is ended
the same way before it exits. An app whose server dies without a word ends itself (cli.cmd_app
watches its parent), and an engine whose app dies does too (bridge._engine_main).

Presets with `model.kind = "python"` import and run the preset's own code: the served app refuses to
run them unless the server was started with --allow-python-models (the app says so on screen).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

HOST = "localhost"
QUIT_GRACE_S = 0.8  # a page closed: how long the app may take to quit by itself
TERM_GRACE_S = 0.5  # then SIGTERM to its group, and SIGKILL this much later
ENV_SERVED = "BASINTUI_SERVED"  # set in a served app's environment: "1"
ENV_ALLOW_PYTHON = "BASINTUI_ALLOW_PYTHON_MODELS"  # "1" when the server allows model.kind = "python"
PYTHON_REFUSED = ("model.kind = \"python\" runs the preset's own Python code on the server, and this server "
                  "does not allow it: restart it with `basintui serve --allow-python-models` to run such "
                  "presets, or use model.kind = \"mlp\"")


def command_for(preset: str) -> list[str]:
    """The command each browser session runs (an argument list: no shell in between)."""
    return [sys.executable, "-m", "basintui.cli", preset]


def python_models_allowed() -> bool:
    """Whether this process may run model.kind = "python" presets: always outside `serve`; under `serve`
    only when the server was started with --allow-python-models."""
    return os.environ.get(ENV_SERVED) != "1" or os.environ.get(ENV_ALLOW_PYTHON) == "1"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a reused id owned by someone else: not ours
        return False
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def end_group(process: asyncio.subprocess.Process, quit_grace: float = QUIT_GRACE_S) -> None:
    """Wait up to `quit_grace` for the app to end by itself; then SIGTERM its whole group, and SIGKILL
    what is left TERM_GRACE_S later. Ends the stragglers of an app that has exited, too (its engines)."""
    pgid = process.pid  # start_new_session: the app leads its own group
    try:
        await asyncio.wait_for(process.wait(), quit_grace)
    except asyncio.TimeoutError:
        pass
    if not _group_alive(pgid):
        return
    _signal_group(pgid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TERM_GRACE_S
    while loop.time() < deadline and _group_alive(pgid):
        await asyncio.sleep(0.05)
    if _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
    try:
        await asyncio.wait_for(process.wait(), 1.0)
    except asyncio.TimeoutError:  # pragma: no cover - SIGKILL cannot be refused
        pass


def _make_server(preset: str, port: int, allow_python_models: bool):
    live: set[asyncio.subprocess.Process] = set()
    sockets: set = set()  # each open page's websocket close()
    app_service = _app_service_class(preset, allow_python_models, live, sockets)
    server = _server_class(live, sockets)
    # textual-serve's websocket handler builds an AppService by name: give it ours (this is the serve
    # command's own process, which exists to run this server)
    import textual_serve.server as server_module

    server_module.AppService = app_service
    return server(" ".join(command_for(preset)), host=HOST, port=port, title=f"basintui: {preset}")


def _app_service_class(preset: str, allow_python_models: bool, live: set, sockets: set) -> type:
    from textual_serve.app_service import AppService

    class BasinAppService(AppService):
        """An app process in its own session, ended with its page (never left running)."""

        def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
            env = super()._build_environment(width, height)
            env[ENV_SERVED] = "1"
            env[ENV_ALLOW_PYTHON] = "1" if allow_python_models else "0"
            return env

        async def _open_app_process(self, width: int = 80, height: int = 24):
            process = await asyncio.create_subprocess_exec(
                *command_for(preset),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._build_environment(width=width, height=height),
                start_new_session=True,
            )
            self._process = process
            self._stdin = process.stdin
            live.add(process)
            sockets.add(self.remote_close)
            return process

        async def stop(self) -> None:
            process = self._process
            if process is None:
                return
            try:  # ask the app to quit (it may not be reading yet); never wait on it unbounded
                await asyncio.wait_for(super().stop(), QUIT_GRACE_S)
            except (asyncio.TimeoutError, ConnectionError, OSError, RuntimeError):
                pass
            await end_group(process, quit_grace=0.0)
            live.discard(process)
            sockets.discard(self.remote_close)

    return BasinAppService


def _server_class(live: set, sockets: set) -> type:
    from textual_serve.server import Server

    class BasinServer(Server):
        interrupted = False

        def request_exit(self) -> None:
            """SIGINT or SIGTERM: stop serving (the command then exits 130, like any interrupted command)."""
            type(self).interrupted = True
            super().request_exit()

        async def on_shutdown(self, app) -> None:
            """The server is stopping: end every app (and its engines) and close its page's socket, so
            that aiohttp does not wait for open pages (its default waits up to 60 s)."""
            await asyncio.gather(*(end_group(p, quit_grace=0.0) for p in list(live)), return_exceptions=True)
            await asyncio.gather(*(close() for close in list(sockets)), return_exceptions=True)
            live.clear()

    return BasinServer


def serve(preset: str, port: int, allow_python_models: bool = False) -> int:
    from ..config import PresetError, load_preset

    try:
        loaded = load_preset(preset)
    except PresetError as exc:
        sys.stderr.write(f"basintui: error: {exc}\n")
        return 2
    if loaded.model.kind == "python" and not allow_python_models:
        sys.stderr.write(f"basintui: error: preset {preset!r}: {PYTHON_REFUSED}\n")
        return 2
    try:
        import textual_serve.server  # noqa: F401
    except ImportError:
        sys.stderr.write("basintui: error: serving needs textual-serve: pip install textual-serve\n")
        return 1
    if not 0 < port < 65536:
        sys.stderr.write(f"basintui: error: --port {port} is not a port number (1-65535)\n")
        return 2
    server = _make_server(preset, port, allow_python_models)
    sys.stderr.write(f"basintui: serving the app on http://{HOST}:{port} (localhost only; ctrl+c stops)\n")
    try:
        server.serve()
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        sys.stderr.write(f"basintui: error: cannot serve on {HOST}:{port}: {exc}\n")
        return 1
    if getattr(server, "interrupted", False):
        return 130
    return 0
