"""Start the chapters' kernels warm: as forks of a process that imported torch once.

Every notebook executes in a fresh Python kernel, and every kernel begins by
importing torch (about 1.3 CPU-seconds on a build machine) and the kernel's
own machinery (ipykernel, zmq, IPython; about 0.3 s); a kernel that trains a
model imports torch._dynamo too (0.9 s), when it makes its optimizer. A cold
build starts one kernel per notebook, so it imports the same libraries
sixteen times over.

On Linux, the build starts a *warm server* as it begins, while Sphinx still
sets up its extensions and analyses the package: a Python process that
imports those libraries (``PRELOAD``), and matplotlib's pyplot as a kernel
would (``PLOTTING``), and waits. Every kernel that starts once the server is
ready (in a cold build, every one) is a fork of it, a copy-on-write clone
with the modules already in memory, which runs
``python -m ipykernel_launcher -f <connection file>`` as a fresh process
would. The reader processes Sphinx forks all ask the same server.

A fork cannot change what a page shows, because:

- the server imports only third-party libraries, never ``attention`` (so the
  record of the package files a page loaded, docs/_ext/package_deps.py, is
  the same), and computes nothing: no tensor, no thread pool, no random draw;
  each kernel seeds torch's and numpy's global generators afresh from the
  operating system, as a fresh process does at import;
- a kernel is forked only if the environment it was given equals the
  server's in every variable except those jupyter_client sets per kernel
  (``PER_KERNEL``), so every setting torch reads (``OMP_NUM_THREADS``,
  ``MKL_CBWR``, ``ATEN_CPU_CAPABILITY``, ...) is the one the kernel would have
  read itself; matplotlib, which also reads the backend a kernel sets and
  the working folder's ``matplotlibrc``, is imported with that backend, and a
  kernel whose working folder has a ``matplotlibrc`` is not forked;
- the forked kernel gets the environment, working folder, arguments, output
  streams and a session of its own, like ``subprocess.Popen`` would give it.

Anything else launches the kernel the ordinary way: another platform,
another kernel command, an output stream captured in a pipe, another
environment, a ``matplotlibrc`` where the kernel runs, a server that failed
to start, ``ATTENTION_WARM_KERNELS=0``.

The server ends with the build (``build-finished``; it also watches a pipe
from the build, should the build die first) and removes its socket. The
kernels it forked are managed by the readers as usual, through
:class:`WarmKernel`, which has the parts of ``Popen`` that jupyter_client
uses.

On the readers' side, two idle waits of jupyter_client go (see
:func:`start_and_stop_promptly`): the 0.2 s it waits, once a kernel answers,
for the kernel's messages to fall silent, and its 0.1 s poll of a stopping
kernel.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

# What the server imports: the libraries every kernel imports first, and no
# module of the package (the kernels must load those themselves, from the
# files as they are when the page executes). Not ipykernel.kernelapp: its
# class reads JPY_PARENT_PID at import, so each kernel imports it (5 ms).
# torch._dynamo: every torch.optim optimizer imports it when it is made (about
# 0.9 CPU-s), so every chapter that trains a model paid for it again.
PRELOAD = ("torch", "torch._dynamo", "ipykernel.ipkernel")

# Imported after PRELOAD, as a kernel would import it (0.3 CPU-s; nearly every
# chapter draws). matplotlib reads two things at import that differ between
# the server and a kernel: MPLBACKEND, which ipykernel sets to its inline
# backend as a kernel starts (unless it is set already), and a matplotlibrc
# file in the working folder. The server imports it with MPLBACKEND set the
# same way, in its own folder (which has no matplotlibrc), and a kernel whose
# working folder has one (or whose MATPLOTLIBRC is a relative path) starts the
# ordinary way. The backend module itself is imported in the kernel, on the
# first figure, as always: it hooks into the kernel's IPython shell.
PLOTTING = "matplotlib.pyplot"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"  # what ipykernel sets

# Variables jupyter_client sets for each kernel; any other difference between
# a kernel's environment and the server's launches the kernel the ordinary way.
PER_KERNEL = frozenset(
    {"JPY_PARENT_PID", "JPY_SESSION_NAME", "PYDEVD_DISABLE_FILE_VALIDATION", "KERNEL_ID"}
)

ENVIRONMENT_VARIABLE = "ATTENTION_WARM_KERNELS"
# What the build writes to the server's standard input when it ends.
STOP = b"stop"
# How long a kernel launch waits for a server that is still importing. The
# server starts about 3 s before the first kernel (while Sphinx sets up its
# extensions and autodoc2 analyses the package) and imports in about 3 s;
# starting the kernel afresh instead would cost about 1.9 s, and 0.9 s more
# for a chapter that trains. A server that does not listen by then (a
# machine far slower or busier than usual) lets kernels start the ordinary way.
READY_WAIT_S = 10.0
_KERNEL_MODULE = "ipykernel_launcher"
_REQUEST_LIMIT = 1 << 24


# -- The server ---------------------------------------------------------------------


def _read_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the client closed the connection mid-request")
        data += chunk
    return data


def _receive_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One request: a byte carrying the two output streams, then length-prefixed JSON."""
    _, fds, _, _ = socket.recv_fds(conn, 1, 2)
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        raise ValueError(f"request with {len(fds)} output streams, expected 2")
    size = int.from_bytes(_read_exactly(conn, 8), "big")
    if not 0 < size <= _REQUEST_LIMIT:
        raise ValueError(f"request of {size} bytes")
    return json.loads(_read_exactly(conn, size)), fds


def _run_kernel(request: Mapping[str, Any], streams: Sequence[int]) -> int:
    """In the forked child: become ``python -m ipykernel_launcher ...`` and run it."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(streams[0], 1)
    os.dup2(streams[1], 2)
    for fd in (devnull, *streams):
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # A fresh process seeds torch's and numpy's global generators from the
    # operating system's entropy; a fork would share the server's seeds.
    # (Python's own random module reseeds itself in a forked child.)
    for name, reseed in (("torch", "seed"), ("numpy.random", "seed")):
        module = sys.modules.get(name)
        if module is not None:
            getattr(module, reseed)()
    sys.argv = list(request["argv"])
    sys.path[0] = os.getcwd()  # what `python -m` puts first
    try:
        import runpy

        runpy.run_module(_KERNEL_MODULE, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _import_as_a_kernel(name: str, folder: str) -> None:
    """Import ``name`` in ``folder``, with MPLBACKEND as ipykernel sets it in a kernel."""
    import importlib

    backend, cwd = os.environ.get("MPLBACKEND"), os.getcwd()
    if not backend:  # the very test ipykernel makes before it sets it
        os.environ["MPLBACKEND"] = INLINE_BACKEND
    os.chdir(folder)
    try:
        importlib.import_module(name)
    finally:
        os.chdir(cwd)
        if backend is None:
            del os.environ["MPLBACKEND"]
        else:
            os.environ["MPLBACKEND"] = backend


def _reads_other_settings(env: Mapping[str, str], cwd: str) -> bool:
    """Whether matplotlib, imported in a kernel, would read a file the server's did not."""
    rc = env.get("MATPLOTLIBRC")
    return os.path.exists(os.path.join(cwd, "matplotlibrc")) or (
        rc is not None and not os.path.isabs(rc)
    )


def serve(path: str) -> None:
    """Import ``PRELOAD``, then fork a kernel for each request on the socket ``path``.

    Runs until the build writes ``STOP`` to its standard input (a pipe from
    the build), or that pipe closes (the build died). A client
    that asked for a kernel gets its pid, and later its exit code (as
    ``Popen.returncode`` reports it) on the same connection.
    """
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    _import_as_a_kernel(PLOTTING, os.path.dirname(path))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen()
    os.rename(path + ".tmp", path)  # clients only ever see a socket that listens
    children: dict[int, socket.socket] = {}
    try:
        while True:
            ready, _, _ = select.select([listener, sys.stdin], [], [], 0.05)
            if sys.stdin in ready and os.read(sys.stdin.fileno(), 1024) in (b"", STOP):
                return  # the build ended, or is gone
            if listener in ready:
                conn, _ = listener.accept()
                try:
                    request, streams = _receive_request(conn)
                except (OSError, ValueError) as error:
                    print(f"warm_kernels: bad request: {error}", file=sys.stderr)
                    conn.close()
                    continue
                # The client reads the kernel's process group as soon as it has
                # the pid, and signals that group: the kernel must lead its own
                # session (as Popen(start_new_session=True) makes it) by then.
                in_session, session_started = os.pipe()
                pid = os.fork()
                if pid == 0:  # the kernel
                    code = 1
                    try:
                        os.setsid()
                        os.close(in_session)
                        os.write(session_started, b"s")
                        os.close(session_started)
                        listener.close()
                        conn.close()
                        for other in children.values():
                            other.close()
                        code = _run_kernel(request, streams)
                    finally:
                        with contextlib.suppress(Exception):
                            sys.stdout.flush()
                            sys.stderr.flush()
                        os._exit(code)
                os.close(session_started)
                os.read(in_session, 1)  # empty if the child died before setsid
                os.close(in_session)
                for fd in streams:
                    os.close(fd)
                conn.sendall(f"{pid}\n".encode())
                children[pid] = conn
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                conn = children.pop(pid, None)
                if conn is not None:
                    with contextlib.suppress(OSError):
                        conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                    conn.close()
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)


# -- The build's side ---------------------------------------------------------------


class WarmKernel:
    """A kernel the warm server forked, with the parts of ``Popen`` jupyter_client uses."""

    def __init__(self, args: list[str], pid: int, conn: socket.socket) -> None:
        self.args = args
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = self.stdout = self.stderr = None
        self._conn = conn
        self._received = b""

    def _settle(self, timeout: float | None) -> int | None:
        """Read the exit code if it arrives within ``timeout`` seconds (None: wait)."""
        if self.returncode is not None:
            return self.returncode
        self._conn.settimeout(timeout)
        try:
            while not self._received.endswith(b"\n"):
                chunk = self._conn.recv(64)
                if not chunk:  # the server is gone: only the process itself can say
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, 0)
                        return None
                    self._received = b"1\n"
                    break
                self._received += chunk
        except (TimeoutError, BlockingIOError):
            return None
        self.returncode = int(self._received)
        self._conn.close()
        return self.returncode

    def poll(self) -> int | None:
        """The exit code, or None while the kernel runs."""
        return self._settle(0.0)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the kernel to exit; raises ``subprocess.TimeoutExpired`` after ``timeout``."""
        code = self._settle(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return code

    def send_signal(self, signum: int) -> None:
        """Signal the kernel, unless it has exited."""
        if self.returncode is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        """Ask the kernel to end (SIGTERM)."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """End the kernel (SIGKILL)."""
        self.send_signal(signal.SIGKILL)


class WarmServer:
    """The build's warm server, and what a kernel launch needs to ask it for a fork.

    The main Sphinx process starts it; the reader processes forked from the
    main process inherit this object and ask the same server.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self._owner = os.getpid()
        self._given_up = False
        self.folder = tempfile.mkdtemp(prefix="attention-warm-")
        self.path = os.path.join(self.folder, "server")
        self.process = subprocess.Popen(
            [sys.executable, __file__, "serve", self.path],
            stdin=subprocess.PIPE,  # the lifeline: the server ends when it closes
            env=self.env,
        )

    @property
    def alive(self) -> bool:
        """Whether the server process runs (asked in any process of the build)."""
        if os.getpid() == self._owner:
            return self.process.poll() is None
        try:  # a reader is not the server's parent: Popen.poll cannot tell there
            os.kill(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    @property
    def ready(self) -> bool:
        """Whether the server runs and listens."""
        return self.alive and os.path.exists(self.path)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the server is ready (True), or has died or ``timeout`` passed (False)."""
        end = time.monotonic() + timeout
        while not self._given_up and not self.ready:
            if not self.alive or time.monotonic() > end:
                self._given_up = True  # this process asks no more (a dead server may linger)
            time.sleep(0.02)
        return not self._given_up

    def fork(
        self, cmd: list[str], env: Mapping[str, str], cwd: str, streams: Sequence[int]
    ) -> WarmKernel:
        """Ask the server for a kernel running ``cmd``; raises OSError if it cannot."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.path)
            body = json.dumps({"argv": [cmd[0], *cmd[3:]], "env": dict(env), "cwd": cwd}).encode()
            socket.send_fds(conn, [b"R"], list(streams))
            conn.sendall(len(body).to_bytes(8, "big") + body)
            received = b""
            while not received.endswith(b"\n"):
                chunk = conn.recv(64)
                if not chunk:
                    raise ConnectionError("the warm server closed the connection")
                received += chunk
        except BaseException:
            conn.close()
            raise
        return WarmKernel(cmd, int(received), conn)

    def stop(self) -> None:
        """End the server and reap it (in the process that started it).

        Waiting for it also adds its CPU time, and that of the kernels it
        forked and reaped, to this process's children, where the build
        benchmark reads a build's CPU time.
        """
        with contextlib.suppress(OSError):
            # Not only closed: a process the build forked after the server
            # started (sphinx-sitemap's multiprocessing manager lives to the
            # end) holds this pipe open too, so the server would see no end.
            self.process.stdin.write(STOP)  # type: ignore[union-attr]
            self.process.stdin.close()  # type: ignore[union-attr]
        try:
            self.process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:  # still importing (a build that executed nothing)
            self.process.terminate()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


_server: WarmServer | None = None  # the build's, once started


def start_server(env: Mapping[str, str]) -> WarmServer:
    """Start the warm server for kernels that will get ``env`` (less ``PER_KERNEL``)."""
    global _server
    _server = WarmServer({k: v for k, v in env.items() if k not in PER_KERNEL})
    return _server


def stop_server() -> None:
    """Stop the build's warm server, if this process started one."""
    global _server
    server, _server = _server, None
    if server is not None:
        server.stop()


def environment_differences(env: Mapping[str, str], server_env: Mapping[str, str]) -> set[str]:
    """The variables, other than ``PER_KERNEL``, set differently in two environments."""
    keys = (set(env) | set(server_env)) - PER_KERNEL
    return {k for k in keys if env.get(k) != server_env.get(k)}


def _stream(value: Any, default: int) -> int | None:
    """The file descriptor a Popen stream argument stands for; None for a pipe."""
    if value is None:
        return default
    if value == subprocess.DEVNULL:
        return None  # rare enough to launch the ordinary way
    if isinstance(value, int):
        return value if value >= 0 else None
    fileno = getattr(value, "fileno", None)
    return fileno() if callable(fileno) else None


def _is_python_kernel(cmd: Sequence[str]) -> bool:
    """``python -m ipykernel_launcher ...`` with this very interpreter (and so its venv)."""
    return (
        len(cmd) >= 3
        and list(cmd[1:3]) == ["-m", _KERNEL_MODULE]
        and os.path.abspath(cmd[0]) == os.path.abspath(sys.executable)
    )


def warm_launch(original: Any) -> Any:
    """Wrap jupyter_client's ``launch_kernel``: fork from the warm server when it can."""

    def launch_kernel(cmd: list[str], **kwargs: Any) -> Any:
        env = kwargs.get("env")
        streams = (_stream(kwargs.get("stdout"), 1), _stream(kwargs.get("stderr"), 2))
        unusual = set(kwargs) - {"stdin", "stdout", "stderr", "env", "cwd", "independent"}
        if not _is_python_kernel(cmd) or env is None or None in streams or unusual:
            return original(cmd, **kwargs)
        server = _server
        if server is None or environment_differences(env, server.env):
            return original(cmd, **kwargs)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        if _reads_other_settings(env, cwd) or not server.wait_ready(READY_WAIT_S):
            return original(cmd, **kwargs)
        env = dict(env)
        if not kwargs.get("independent"):  # what jupyter_client's own launcher adds
            env["JPY_PARENT_PID"] = str(os.getpid())
        try:
            return server.fork(cmd, env, cwd, streams)  # type: ignore[arg-type]
        except OSError:
            return original(cmd, **kwargs)

    launch_kernel.__wrapped__ = original  # type: ignore[attr-defined]
    return launch_kernel


# -- The readers' side: no idle wait as a kernel starts and stops --------------------

# jupyter_client's readiness check ends by waiting until the kernel's IOPub
# channel has been silent for 0.2 s, and its shutdown polls the stopping
# kernel every 0.1 s: 0.3 s of every notebook in which the reader's core
# idles, about 2.4 s of a cold build on two cores. nbclient needs neither
# wait: it reads only the messages that answer the cell it runs (by their
# parent's id), so a late message from the start is skipped, as the flush
# would have skipped it.
STOP_POLL_S = 0.01


async def prompt_wait_for_ready(client: Any, timeout: float | None = None) -> None:
    """jupyter_client's ``wait_for_ready``, without its wait for a silent IOPub.

    As in jupyter_client: ask for the kernel's info until it replies on the
    shell channel and a message arrives on IOPub (so its subscription is
    live), failing if the kernel dies or ``timeout`` seconds pass. Then take
    only the IOPub messages already queued.

    Args:
        client: an ``AsyncKernelClient`` made by a kernel manager (any other
            client is left to jupyter_client, which first waits for the
            kernel's heartbeat).
        timeout: seconds to wait at most; ``None`` waits for ever.
    """
    from queue import Empty

    from jupyter_client.manager import KernelManager

    if not isinstance(client.parent, KernelManager):
        await _ORIGINAL_WAIT_FOR_READY(client, timeout)
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        client.kernel_info()
        try:
            reply = await client.shell_channel.get_msg(timeout=1)
        except Empty:
            pass
        else:
            if reply["msg_type"] == "kernel_info_reply":
                try:
                    await client.iopub_channel.get_msg(timeout=0.2)
                except Empty:
                    pass
                else:
                    client._handle_kernel_info_reply(reply)
                    break
        if not await client._async_is_alive():
            raise RuntimeError("Kernel died before replying to kernel_info")
        if deadline is not None and time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
    while await client.iopub_channel.msg_ready():
        await client.iopub_channel.get_msg(timeout=0)


async def prompt_finish_shutdown(
    manager: Any,
    waittime: float | None = None,
    pollinterval: float = STOP_POLL_S,
    restart: bool = False,
) -> None:
    """jupyter_client's ``finish_shutdown``, polling every ``STOP_POLL_S`` s."""
    await _ORIGINAL_FINISH_SHUTDOWN(manager, waittime, pollinterval, restart)


_ORIGINAL_WAIT_FOR_READY: Any = None
_ORIGINAL_FINISH_SHUTDOWN: Any = None


def start_and_stop_promptly() -> None:
    """Route jupyter_client's readiness check and shutdown wait to the above (once)."""
    global _ORIGINAL_WAIT_FOR_READY, _ORIGINAL_FINISH_SHUTDOWN
    from jupyter_client.asynchronous.client import AsyncKernelClient
    from jupyter_client.manager import KernelManager

    if _ORIGINAL_WAIT_FOR_READY is None:
        _ORIGINAL_WAIT_FOR_READY = AsyncKernelClient.wait_for_ready
        AsyncKernelClient.wait_for_ready = prompt_wait_for_ready
    if _ORIGINAL_FINISH_SHUTDOWN is None:
        _ORIGINAL_FINISH_SHUTDOWN = KernelManager._async_finish_shutdown
        KernelManager._async_finish_shutdown = prompt_finish_shutdown


def enabled(platform: str = sys.platform, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether kernels start warm here: on Linux, unless ``ATTENTION_WARM_KERNELS=0``."""
    return platform == "linux" and environ.get(ENVIRONMENT_VARIABLE, "1") != "0"


def _start(app: Any) -> None:
    # "off" without myst-nb: then nothing executes.
    if enabled() and getattr(app.config, "nb_execution_mode", "off") != "off":
        start_server(os.environ)


def _stop(app: Any, exception: BaseException | None) -> None:
    stop_server()


def setup(app: Any) -> dict[str, bool]:
    """Start the server with the build, route kernel launches to it, stop it at the end."""
    if enabled():
        from jupyter_client.provisioning import local_provisioner

        current = local_provisioner.launch_kernel
        if not hasattr(current, "__wrapped__"):
            local_provisioner.launch_kernel = warm_launch(current)
        start_and_stop_promptly()
    # Started now, as Sphinx sets up this extension: it imports while Sphinx
    # sets up the rest (about 0.8 s) and sphinx-autodoc2 analyses the package
    # (about 2 s), and is ready when the first kernel starts. conf.py sets up
    # parallel_read before, which has set the kernels' thread count: the
    # server must see the environment they get.
    _start(app)
    app.connect("build-finished", _stop)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve(sys.argv[2])
    # Skip the interpreter's teardown: freeing torch's modules takes about
    # 0.6 s, and the build waits for this process at its very end. The server
    # has no file to flush but its output streams, and runs no user code.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
