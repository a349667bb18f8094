"""Warm kernels: forked from a process that imported torch, and otherwise as fresh.

docs/_ext/warm_kernels.py makes the build's kernels, after each reader's
first, forks of a server that imported torch once. These tests run real
kernels through jupyter_client with the extension's launcher and check that a
forked kernel is what a fresh ``python -m ipykernel_launcher`` would be (its
own session, environment, working folder, arguments, a fresh import of the
kernel application and of the package) and that anything the server cannot
reproduce is launched the ordinary way.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import extension

warm_kernels = extension("warm_kernels")

linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="warm kernels are forked on Linux only"
)

# Long enough for a loaded machine to import torch; the tests wait for a state,
# and this only bounds a wait that would otherwise hang on a broken server.
DEADLINE_S = 120.0

PROBE = """
import json, os, sys
from ipykernel.kernelapp import IPKernelApp
import matplotlib, matplotlib.pyplot as plt
import torch
plt.figure()  # loads the backend, which hooks into the kernel's shell
plt.close("all")
hooks = sorted(f.__name__ for f in get_ipython().events.callbacks["post_execute"])
print(json.dumps({
    "pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0), "cwd": os.getcwd(),
    "path": sys.path, "probe": os.environ.get("WARM_KERNEL_PROBE"),
    "parent_handle": IPKernelApp.instance().parent_handle,
    "jpy_parent_pid": os.environ.get("JPY_PARENT_PID"),
    "attention_loaded": "attention" in sys.modules,
    "first_draw": torch.rand(3).tolist(),
    "mpl_env": os.environ.get("MPLBACKEND"),
    "mpl_backend": matplotlib.rcParams._get("backend"),  # as read at import
    "mpl_linewidth": matplotlib.rcParams["lines.linewidth"],  # a matplotlibrc sets it
    "mpl_hooks": hooks,
}))
"""


def _settled(condition, what: str) -> None:
    """Wait until ``condition()`` holds; fail, naming ``what``, if it never does."""
    end = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"{what} did not happen within {DEADLINE_S:.0f} s")
        time.sleep(0.05)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The build's warm server, ready, with a variable the probe reads."""
    monkeypatch.setenv("WARM_KERNEL_PROBE", "from the build")
    started = warm_kernels.start_server(os.environ)
    _settled(lambda: started.ready or started.process.poll() is not None, "the server's start")
    assert started.ready, f"the warm server exited with {started.process.returncode}"
    yield started
    warm_kernels.stop_server()


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """jupyter_client launching through the extension; records each kernel process."""
    from jupyter_client.provisioning import local_provisioner

    original = getattr(
        local_provisioner.launch_kernel, "__wrapped__", local_provisioner.launch_kernel
    )
    launched: list[object] = []
    warm = warm_kernels.warm_launch(original)

    def recording(cmd: list[str], **kwargs: object) -> object:
        process = warm(cmd, **kwargs)
        launched.append(process)
        return process

    monkeypatch.setattr(local_provisioner, "launch_kernel", recording)
    return launched


def _probe(cwd: Path, env: dict[str, str] | None = None) -> dict[str, object]:
    """Start a kernel as the build does, run PROBE in it, shut it down."""
    from jupyter_client.manager import start_new_kernel

    extra = {} if env is None else {"env": env}
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(cwd), **extra)
    try:
        reply = client.execute_interactive(PROBE, timeout=DEADLINE_S, output_hook=_collect)
        assert reply["content"]["status"] == "ok", reply["content"]
        return json.loads(_collect.text.pop())
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=False)


def _collect(message: dict) -> None:
    if message["msg_type"] == "stream":
        _collect.text.append(message["content"]["text"])


_collect.text = []  # type: ignore[attr-defined]


@linux_only
def test_a_forked_kernel_is_what_a_fresh_one_would_be(server, launches, tmp_path: Path) -> None:
    # The same kernel started afresh (another value of an unrelated variable
    # makes the launcher start it the ordinary way), then forked.
    fresh = _probe(tmp_path, env={**server.env, "WARM_KERNEL_UNRELATED": "1"})
    forked = _probe(tmp_path, env=dict(server.env))  # the build's environment
    ordinary, process = launches[:2]
    assert isinstance(ordinary, subprocess.Popen)
    assert fresh["ppid"] == os.getpid()
    assert isinstance(process, warm_kernels.WarmKernel)  # forked, not started afresh
    assert forked["pid"] == process.pid
    assert forked["ppid"] == server.process.pid
    assert forked["sid"] == forked["pid"]  # leads its own session, as Popen(start_new_session=True)
    assert forked["cwd"] == str(tmp_path)
    assert forked["probe"] == "from the build"
    # The kernel application was imported in the kernel, with the kernel's
    # environment: it knows the process that manages it.
    assert forked["parent_handle"] == int(forked["jpy_parent_pid"]) == os.getpid()
    assert forked["attention_loaded"] is False  # the package is never preloaded
    # matplotlib, preloaded, has the backend ipykernel sets, hooked into the shell.
    assert forked["mpl_env"] == forked["mpl_backend"] == warm_kernels.INLINE_BACKEND
    assert "flush_figures" in forked["mpl_hooks"]
    # Unseeded draws differ between kernels, as between fresh processes; a
    # fork that kept the server's seed would repeat them.
    again = _probe(tmp_path, env=dict(server.env))
    assert isinstance(launches[-1], warm_kernels.WarmKernel)
    assert forked["first_draw"] != again["first_draw"]
    assert forked["path"] == fresh["path"]  # the same module search path
    for key in ("pid", "ppid", "sid", "first_draw"):
        fresh.pop(key), forked.pop(key)
    assert forked == fresh
    assert process.wait(timeout=DEADLINE_S) == 0  # shut down cleanly, exit code relayed


@linux_only
def test_another_environment_starts_the_kernel_the_ordinary_way(
    server, launches, tmp_path: Path
) -> None:
    seen = _probe(tmp_path, env={**server.env, "OMP_NUM_THREADS": "7"})
    (process,) = launches
    assert isinstance(process, subprocess.Popen)
    assert seen["ppid"] == os.getpid()


@linux_only
def test_a_matplotlibrc_where_the_kernel_runs_starts_it_the_ordinary_way(
    server, launches, tmp_path: Path
) -> None:
    (tmp_path / "matplotlibrc").write_text("lines.linewidth: 7\n", encoding="utf-8")
    seen = _probe(tmp_path, env=dict(server.env))
    (process,) = launches
    assert isinstance(process, subprocess.Popen)
    assert seen["mpl_linewidth"] == 7  # read by the kernel's own import


@linux_only
def test_without_a_server_kernels_start_the_ordinary_way(launches, tmp_path: Path) -> None:
    assert warm_kernels._server is None
    seen = _probe(tmp_path)
    (process,) = launches
    assert isinstance(process, subprocess.Popen)
    assert seen["ppid"] == os.getpid()


@linux_only
def test_the_build_stops_and_reaps_its_server(monkeypatch: pytest.MonkeyPatch) -> None:
    app = SimpleNamespace(config=SimpleNamespace(nb_execution_mode="cache"))
    monkeypatch.delenv(warm_kernels.ENVIRONMENT_VARIABLE, raising=False)
    warm_kernels._start(app)  # as the extension is set up
    started = warm_kernels._server
    assert started is not None
    _settled(lambda: started.ready or started.process.poll() is not None, "the server's start")
    assert started.ready
    warm_kernels._stop(app, None)  # build-finished
    assert warm_kernels._server is None
    assert started.process.returncode == 0  # reaped: its CPU time counts as the build's
    assert not os.path.exists(started.folder)  # socket and folder removed


@linux_only
def test_the_server_stops_although_a_process_forked_later_holds_its_pipe() -> None:
    # sphinx-sitemap forks a multiprocessing manager after the server starts,
    # which keeps the server's standard input open until after the build ends.
    started = warm_kernels.start_server(os.environ)
    _settled(lambda: started.ready or started.process.poll() is not None, "the server's start")
    holder = os.fork()
    if holder == 0:  # holds every descriptor the build had, the pipe too
        time.sleep(DEADLINE_S)
        os._exit(0)
    try:
        warm_kernels.stop_server()
        assert started.process.returncode == 0  # it ended by itself, not by SIGTERM
    finally:
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)


@linux_only
def test_a_build_that_ends_while_the_server_imports_still_reaps_it() -> None:
    started = warm_kernels.start_server(os.environ)
    warm_kernels.stop_server()  # at once: the server is still importing torch
    assert started.process.returncode is not None
    assert not os.path.exists(started.folder)


@linux_only
@pytest.mark.parametrize("asker", ["the build", "a reader"])
def test_a_server_that_died_is_given_up_at_once(asker: str) -> None:
    started = warm_kernels.start_server(os.environ)
    try:
        started.process.kill()
        started.process.wait()
        if asker == "a reader":  # a process forked from the build, not the server's parent
            started._owner = -1
        began = time.monotonic()
        assert started.wait_ready(DEADLINE_S) is False
        assert time.monotonic() - began < DEADLINE_S / 2  # did not wait out the deadline
        assert started.wait_ready(DEADLINE_S) is False  # and never asks again
    finally:
        warm_kernels.stop_server()


def test_no_server_when_nothing_executes() -> None:
    app = SimpleNamespace(config=SimpleNamespace(nb_execution_mode="off"))
    warm_kernels._start(app)
    assert warm_kernels._server is None


@linux_only
def test_kill_and_exit_codes_as_popen_reports_them(server) -> None:
    cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "unused.json"]
    kernel = server.fork(cmd, server.env, os.getcwd(), (1, 2))
    # The child is in its own session before its pid is returned: signalling the
    # group of that pid never reaches this process.
    assert os.getpgid(kernel.pid) == kernel.pid != os.getpgid(0)
    assert kernel.poll() is None or kernel.returncode is not None
    kernel.kill()
    assert kernel.wait(timeout=DEADLINE_S) == -signal.SIGKILL
    assert kernel.poll() == -signal.SIGKILL
    kernel.kill()  # a finished kernel: nothing to signal, no error


@linux_only
def test_a_request_without_both_streams_is_refused_and_the_server_goes_on(server) -> None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(DEADLINE_S)  # a server that waited for the rest would fail, not hang
    conn.connect(server.path)
    socket.send_fds(conn, [b"R"], [1])  # one stream where two are expected
    assert conn.recv(64) == b""  # closed without a kernel
    conn.close()
    cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "unused.json"]
    kernel = server.fork(cmd, server.env, os.getcwd(), (1, 2))  # still serving
    kernel.kill()
    assert kernel.wait(timeout=DEADLINE_S) == -signal.SIGKILL


def test_only_per_kernel_variables_may_differ() -> None:
    base = {"OMP_NUM_THREADS": "1", "PATH": "/bin"}
    kernel = {**base, "JPY_PARENT_PID": "12", "JPY_SESSION_NAME": "x"}
    assert warm_kernels.environment_differences(kernel, base) == set()
    other = {**kernel, "MKL_CBWR": "COMPATIBLE"}
    assert warm_kernels.environment_differences(other, base) == {"MKL_CBWR"}
    assert warm_kernels.environment_differences({"PATH": "/bin"}, base) == {"OMP_NUM_THREADS"}


def test_only_this_interpreter_running_ipykernel_is_forked() -> None:
    kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", "c.json"]
    assert warm_kernels._is_python_kernel(kernel)
    assert not warm_kernels._is_python_kernel(["/other/venv/bin/python", *kernel[1:]])
    assert not warm_kernels._is_python_kernel([sys.executable, "-m", "other_kernel"])


def test_streams_a_fork_can_inherit() -> None:
    assert warm_kernels._stream(None, 2) == 2
    assert warm_kernels._stream(5, 1) == 5
    assert warm_kernels._stream(subprocess.PIPE, 1) is None  # captured: the ordinary way
    assert warm_kernels._stream(subprocess.DEVNULL, 1) is None
    with open(os.devnull, "w") as sink:
        assert warm_kernels._stream(sink, 1) == sink.fileno()


def test_on_by_default_on_linux_only_and_can_be_turned_off() -> None:
    assert warm_kernels.enabled("linux", {})
    assert not warm_kernels.enabled("linux", {warm_kernels.ENVIRONMENT_VARIABLE: "0"})
    assert not warm_kernels.enabled("darwin", {})
    assert not warm_kernels.enabled("win32", {})


def test_the_server_preloads_no_module_of_the_package() -> None:
    # The record of the package files a page loaded (package_deps) must come
    # from the kernel's own imports.
    code = (
        "import sys, importlib; [importlib.import_module(m) for m in sys.argv[1:]];"
        "print(sorted(m for m in sys.modules if m == 'attention' or m.startswith('attention.')"
        " or m == 'ipykernel.kernelapp'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *warm_kernels.PRELOAD, warm_kernels.PLOTTING],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_conf_loads_the_extension() -> None:
    conf = (Path(__file__).resolve().parents[1] / "conf.py").read_text(encoding="utf-8")
    assert 'extensions.append("warm_kernels")' in conf


def test_the_server_starts_as_it_is_set_up_with_the_kernels_thread_count(
    restored_jupyter_client: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It starts before Sphinx sets up the remaining extensions and autodoc2
    # analyses the package, so that it imports meanwhile; it must see the
    # OMP_NUM_THREADS the kernels get, which parallel_read sets in its setup.
    conf = (Path(__file__).resolve().parents[1] / "conf.py").read_text(encoding="utf-8")
    order = [conf.index(f'"{name}"') for name in ("myst_nb", "parallel_read", "warm_kernels")]
    assert order == sorted(order)  # Sphinx sets extensions up in this order
    monkeypatch.setattr(
        os, "environ", {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    )
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.delenv(warm_kernels.ENVIRONMENT_VARIABLE, raising=False)
    started: list[dict[str, str]] = []
    monkeypatch.setattr(warm_kernels, "start_server", lambda env: started.append(dict(env)))
    connected: list[str] = []
    app = SimpleNamespace(
        config=SimpleNamespace(nb_execution_mode="cache"),
        parallel=2,
        connect=lambda event, *args, **kwargs: connected.append(event),
        add_config_value=lambda *args, **kwargs: None,
    )
    extension("parallel_read").setup(app)
    assert started == []
    warm_kernels.setup(app)
    assert len(started) == 1
    assert started[0]["OMP_NUM_THREADS"] == "1"
    assert "build-finished" in connected  # and it stops with the build


def test_settings_matplotlib_would_read_from_another_folder(tmp_path: Path) -> None:
    reads = warm_kernels._reads_other_settings
    assert not reads({}, str(tmp_path))
    assert not reads({"MATPLOTLIBRC": "/etc/matplotlibrc"}, str(tmp_path))  # the same anywhere
    assert reads({"MATPLOTLIBRC": "conf/matplotlibrc"}, str(tmp_path))  # relative to the kernel
    (tmp_path / "matplotlibrc").write_text("", encoding="utf-8")
    assert reads({}, str(tmp_path))


# -- Kernels start and stop without idle waits -----------------------------------------


@pytest.fixture
def restored_jupyter_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a test routes in jupyter_client (setup does) is undone after it."""
    from jupyter_client.asynchronous.client import AsyncKernelClient
    from jupyter_client.manager import KernelManager
    from jupyter_client.provisioning import local_provisioner

    monkeypatch.setattr(AsyncKernelClient, "wait_for_ready", AsyncKernelClient.wait_for_ready)
    monkeypatch.setattr(
        KernelManager, "_async_finish_shutdown", KernelManager._async_finish_shutdown
    )
    monkeypatch.setattr(local_provisioner, "launch_kernel", local_provisioner.launch_kernel)
    monkeypatch.setattr(warm_kernels, "_ORIGINAL_WAIT_FOR_READY", None)
    monkeypatch.setattr(warm_kernels, "_ORIGINAL_FINISH_SHUTDOWN", None)


class _Channel:
    """A channel holding some messages; records the timeout of every read."""

    def __init__(self, *messages: dict) -> None:
        self.messages = list(messages)
        self.timeouts: list[float | None] = []

    async def get_msg(self, timeout: float | None = None) -> dict:
        self.timeouts.append(timeout)
        if not self.messages:
            raise queue.Empty
        return self.messages.pop(0)

    async def msg_ready(self) -> bool:
        return bool(self.messages)


def _client(shell: _Channel, iopub: _Channel, alive: bool = True) -> SimpleNamespace:
    from jupyter_client.manager import KernelManager

    async def is_alive() -> bool:
        return alive

    client = SimpleNamespace(
        parent=KernelManager(), shell_channel=shell, iopub_channel=iopub, asked=0, info=[]
    )
    client.kernel_info = lambda: setattr(client, "asked", client.asked + 1)
    client._handle_kernel_info_reply = client.info.append
    client._async_is_alive = is_alive
    return client


def test_a_ready_kernel_is_not_watched_for_silence() -> None:
    reply = {"msg_type": "kernel_info_reply", "content": {"status": "ok"}}
    status = [{"msg_type": "status", "content": {"execution_state": s}} for s in ("busy", "idle")]
    iopub = _Channel(*status, {"msg_type": "stream"})
    client = _client(_Channel(reply), iopub)
    asyncio.run(warm_kernels.prompt_wait_for_ready(client, timeout=60))
    assert client.asked == 1
    assert client.info == [reply]
    # One wait for a first IOPub message (the subscription is live), as
    # jupyter_client does; then only the messages already there, without
    # waiting: jupyter_client would wait 0.2 s after each, and after the last.
    assert iopub.timeouts == [0.2, 0, 0]
    assert iopub.messages == []


def test_a_kernel_asked_again_until_iopub_answers() -> None:
    reply = {"msg_type": "kernel_info_reply", "content": {}}
    iopub = _Channel()
    shell = _Channel(reply, reply)
    client = _client(shell, iopub)

    async def first_silent_then_one(timeout: float | None = None) -> dict:
        iopub.timeouts.append(timeout)
        if len(iopub.timeouts) == 1:
            raise queue.Empty
        return {"msg_type": "status"}

    iopub.get_msg = first_silent_then_one  # type: ignore[method-assign]
    asyncio.run(warm_kernels.prompt_wait_for_ready(client, timeout=60))
    assert client.asked == 2
    assert client.info == [reply]


def test_a_dead_or_silent_kernel_is_reported() -> None:
    dead = _client(_Channel(), _Channel(), alive=False)
    with pytest.raises(RuntimeError, match="died before replying"):
        asyncio.run(warm_kernels.prompt_wait_for_ready(dead, timeout=60))
    silent = _client(_Channel(), _Channel())
    with pytest.raises(RuntimeError, match="didn't respond in 0 seconds"):
        asyncio.run(warm_kernels.prompt_wait_for_ready(silent, timeout=0))


def test_a_client_without_a_manager_waits_as_jupyter_client_does(
    restored_jupyter_client: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    async def original(client: object, timeout: float | None = None) -> None:
        calls.append((client, timeout))

    monkeypatch.setattr(warm_kernels, "_ORIGINAL_WAIT_FOR_READY", original)
    client = SimpleNamespace(parent=None)
    asyncio.run(warm_kernels.prompt_wait_for_ready(client, timeout=5))
    assert calls == [(client, 5)]


def test_setup_routes_jupyter_client_once(restored_jupyter_client: None) -> None:
    from unittest import mock

    from jupyter_client.asynchronous.client import AsyncKernelClient
    from jupyter_client.manager import KernelManager

    original = KernelManager._async_finish_shutdown
    app = mock.MagicMock()
    app.config.nb_execution_mode = "off"  # no server
    warm_kernels.setup(app)
    warm_kernels.setup(app)  # a second build in the same process
    assert AsyncKernelClient.wait_for_ready is warm_kernels.prompt_wait_for_ready
    assert KernelManager._async_finish_shutdown is warm_kernels.prompt_finish_shutdown
    assert warm_kernels._ORIGINAL_FINISH_SHUTDOWN is original  # not the prompt one


def test_a_stopping_kernel_is_polled_often(
    restored_jupyter_client: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_client.manager import KernelManager

    warm_kernels.start_and_stop_promptly()
    polls = []

    async def wait(self: object, pollinterval: float = 0.1) -> None:
        polls.append(pollinterval)

    monkeypatch.setattr(KernelManager, "_async_wait", wait)
    monkeypatch.setattr(KernelManager, "has_kernel", False)
    asyncio.run(KernelManager()._async_finish_shutdown(waittime=1))
    assert polls  # jupyter_client waits once, or twice if the kernel lingers
    assert set(polls) == {warm_kernels.STOP_POLL_S}
    assert warm_kernels.STOP_POLL_S < 0.1  # jupyter_client's interval


@linux_only
def test_a_notebook_runs_alike_through_the_prompt_start_and_stop(
    server, launches, restored_jupyter_client: None
) -> None:
    import nbformat
    from nbclient import NotebookClient

    cells = ["print('first')", "from IPython.display import display\ndisplay(2); print(3)", "4"]

    def run() -> list[list[dict]]:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        # The server's environment (pytest changes a variable between a
        # fixture and the test), so that the kernels are forked.
        NotebookClient(nb, kernel_name="python3", timeout=DEADLINE_S).execute(env=server.env)
        return [cell.outputs for cell in nb.cells]

    before = run()
    warm_kernels.start_and_stop_promptly()
    after = run()
    assert len(launches) == 2
    assert all(isinstance(p, warm_kernels.WarmKernel) for p in launches)
    assert after == before
    assert before[0] == [{"output_type": "stream", "name": "stdout", "text": "first\n"}]
