"""The worker process: hosts the user's entry script and runs its mini-batches.

A worker connects back to the runner, loads the entry script, calls ``init()`` once, then runs
every mini-batch it is sent and answers with the rows (already formatted as output lines) and
the counts. ``shutdown()`` runs once when the runner says stop. What the script prints or logs
goes to the worker's own log file.

The messages both ways are ``messages.py``'s types; the hello that opens the connection is
the listener's handshake, ``("hello", name, pid, incarnation)`` (incarnation: which start of
that worker this process is).
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
from multiprocessing.connection import Client
from pathlib import Path
from typing import Any

from ..settings import DEFAULT_LOGGING_LEVEL
from . import watchdog
from .error_text import MAX_MESSAGE_CHARS, MAX_TRACEBACK_CHARS, shorten
from .messages import (
    Beat,
    Bye,
    Done,
    Failed,
    InitFailed,
    Ready,
    RunMiniBatch,
    Stop,
    WorkerMessage,
    decode,
    encode,
)
from .mini_batch import load_mini_batch, mini_batch_context, mini_batch_dataset
from .parent_death import end_with_parent
from .rows import format_rows, result_count, result_rows

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# Set by the runner when the step's environment pins pandas below 3 (environment_check.py's
# worker_variables decides; the name is the contract between the two).
PANDAS_OBJECT_STRINGS = "JUPYTER_PARALLELRUN_PANDAS_OBJECT_STRINGS"


class MiniBatchContext:
    """What ``run(mini_batch, mini_batch_context)`` receives, as Azure's: ``partition_key_value``
    (the mini-batch's ``partition_keys`` values) and ``dataset`` (its part of the input)."""

    def __init__(self, values: dict[str, Any], spec: dict[str, Any] | None = None) -> None:
        self.partition_key_value = values.get("partition_key_value", {})
        self.mini_batch_id = values.get("mini_batch_id")
        self._spec = spec

    @property
    def dataset(self) -> Any:
        """The mini-batch's part of the input as a dataset (its files, or its rows) in a
        ``partition_keys`` job; None otherwise."""
        return mini_batch_dataset(self._spec) if self._spec is not None else None

    def __repr__(self) -> str:
        return f"MiniBatchContext(partition_key_value={self.partition_key_value!r})"


def resource_sample() -> tuple[int, float]:
    """This process's resident memory in bytes and CPU seconds used so far."""
    times = os.times()
    try:
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * _PAGE_SIZE
    except OSError:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return rss, times.user + times.system


def _load_entry_script(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _redirect_output(log_file: Path, level: str) -> None:
    """Send everything the process prints, from Python or C, into its log file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # A file name that is not UTF-8 (printed, or in a traceback) is written escaped: printing
    # it must not raise inside the user's code.
    for fd, stream in ((1, "stdout"), (2, "stderr")):
        setattr(
            sys,
            stream,
            open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False),  # noqa: SIM115
        )
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def _restore_pinned_behaviour() -> None:
    """Before the entry script loads: behave as the environment's pinned versions would where
    a later major version changed behaviour (pandas 3 infers Arrow-backed strings; pandas 1
    and 2 made object columns, and scripts written for them may rely on it)."""
    if os.environ.get(PANDAS_OBJECT_STRINGS) != "1":
        return
    try:
        import pandas
    except ImportError:
        return
    if int(pandas.__version__.split(".")[0]) < 3:
        return
    import warnings

    try:
        with warnings.catch_warnings():
            # pandas 3 warns that the option goes away in pandas 4: not the script's concern
            warnings.simplefilter("ignore")
            pandas.set_option("future.infer_string", False)
    except Exception as error:  # noqa: BLE001 - a pandas without the option runs as it is
        logging.getLogger(__name__).warning(
            "cannot set pandas' future.infer_string=False for the pinned pandas: %s", error
        )
    else:
        logging.getLogger(__name__).info(
            "pandas %s with future.infer_string=False: the environment pins pandas < 3",
            pandas.__version__,
        )


class _Channel:
    """The connection to the runner, shared by the main loop and the heartbeat thread."""

    def __init__(self, address: Any, authkey: bytes) -> None:
        self.conn = Client(address, authkey=authkey)
        self.lock = threading.Lock()

    def send(self, message: WorkerMessage) -> None:
        with self.lock:
            self.conn.send(encode(message))

    def recv(self) -> tuple:
        return self.conn.recv()


def _heartbeat(
    channel: _Channel, interval: float, sample_every: float, stop: threading.Event
) -> None:
    """Tell the runner this process is alive every ``interval`` seconds, with a CPU and memory
    sample every ``sample_every`` seconds (0: never). The thread keeps beating while ``init()``
    or ``run()`` hold the main thread, unless C code holds the GIL."""
    last_sample = 0.0
    while not stop.wait(interval):
        sample: tuple = (None, None)
        if sample_every and time.monotonic() - last_sample >= sample_every:
            sample, last_sample = resource_sample(), time.monotonic()
        try:
            channel.send(Beat(*sample))
        except OSError:
            # The runner is gone (killed, or its machine lost): end now, even with run() stuck,
            # rather than run user code for a run nobody will commit.
            os._exit(1)


def worker_main(address: Any, authkey: bytes, name: str, node_id: int, spec: dict) -> None:
    """Run one worker process until the runner says stop (the body of every backend's worker)."""
    end_with_parent(spec.get("parent_pid"))
    channel = _Channel(address, authkey)
    # A worker that is not the runner's child gets no parent-death signal: a watchdog process
    # kills it when the runner's side of the connection closes, even while run() holds the GIL.
    guard = watchdog.start(channel.conn.fileno()) if spec.get("parent_pid") is None else None
    channel.conn.send(("hello", name, os.getpid(), spec["incarnation"]))
    # Beating starts at once: the imports below take seconds on a loaded machine, and a
    # worker silent that long while starting is taken for a frozen one.
    sample_every = float(spec.get("resource_monitor_interval") or 0)
    stop = threading.Event()
    threading.Thread(
        target=_heartbeat,
        args=(channel, float(spec.get("heartbeat_interval", 5)), sample_every, stop),
        daemon=True,
    ).start()
    _redirect_output(Path(spec["log_file"]), spec.get("logging_level", DEFAULT_LOGGING_LEVEL))
    log_name = "/".join(Path(spec["log_file"]).parts[-3:])  # logs/workers/<name>.txt
    started = time.time()
    try:
        module = _load(spec, name, node_id)
        run = module.run
        wants_context = len(inspect.signature(run).parameters) >= 2
    except BaseException as error:  # noqa: BLE001 - any failure of user code is reported
        traceback.print_exc()
        # The runner closes the connection on this message: the watchdog must not take that
        # for the runner's death and kill a process that is ending on its own.
        watchdog.stop(guard)
        channel.send(InitFailed(*_error_text(error, log_name)))
        stop.set()
        return
    logging.getLogger(__name__).info("%s ready after %.2fs", name, time.time() - started)
    channel.send(Ready(time.time() - started))
    if sample_every:  # a first sample now, so even a short run shows each worker's memory
        channel.send(Beat(*resource_sample()))
    _serve(channel, spec, name, run, wants_context, log_name)
    stop.set()
    shutdown = getattr(module, "shutdown", None)
    if callable(shutdown):
        try:
            shutdown()
        except Exception:  # noqa: BLE001 - logged; the outputs are already committed
            traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    watchdog.stop(guard)  # as before InitFailed: the runner closes the connection on Bye
    channel.send(Bye())


def _load(spec: dict, name: str, node_id: int) -> Any:
    """The entry script, loaded as the user's code expects it, with its init() run."""
    from .. import entry_script

    source_dir = Path(spec["source_directory"])
    os.chdir(source_dir)
    sys.path.insert(0, str(source_dir))
    sys.argv = [spec["entry_script"], *spec.get("arguments", [])]
    entry_script._set_context(
        output_dir=spec["output_dir"],
        working_dir=str(source_dir),
        node_id=node_id,
        process_name=name,
        log_dir=str(Path(spec["log_file"]).parent),
    )
    _restore_pinned_behaviour()
    module = _load_entry_script(source_dir / spec["entry_script"])
    if hasattr(module, "init"):
        module.init()
    return module


def _serve(
    channel: _Channel, spec: dict, name: str, run: Any, wants_context: bool, log_name: str
) -> None:
    """Run each mini-batch the runner sends, until it says stop."""
    from .fetch import Inbox

    append_rows = spec.get("output_action", "append_row") == "append_row"
    cache_dir = spec.get("cache_dir") or os.path.join(tempfile.gettempdir(), "parallelrun-cache")
    inbox = Inbox(
        channel,
        os.path.join(cache_dir, f"{name}-{os.getpid()}"),
        spec.get("credentials"),
        read_ahead=spec.get("read_ahead", True),
    )
    while True:
        raw, fetched = inbox.recv()
        message = decode(raw, (RunMiniBatch, Stop))
        if isinstance(message, Stop):
            break
        try:
            answer = _run_mini_batch(message, fetched, run, wants_context, append_rows, log_name)
        finally:
            if fetched is not None:
                fetched.discard()
        channel.send(answer)
    inbox.close()


def _run_mini_batch(
    message: RunMiniBatch,
    fetched: Any,
    run: Any,
    wants_context: bool,
    append_rows: bool,
    log_name: str,
) -> Done | Failed:
    """One try of a mini-batch: its result, or how it failed."""
    mb_id, mb_spec = message.mb_id, message.spec
    began, n_items = time.time(), None
    try:
        mini_batch = fetched.paths() if fetched is not None else load_mini_batch(mb_spec)
        n_items = len(mini_batch)
        if wants_context:
            values = {**mini_batch_context(mb_spec), "mini_batch_id": mb_id}
            result = run(mini_batch, MiniBatchContext(values, mb_spec))
        else:
            result = run(mini_batch)
        if append_rows:
            rows, note = result_rows(result, n_items)
            n_results, payload = len(rows), format_rows(rows)
        else:
            n_results, note = result_count(result, n_items)
            payload = b""
    except BaseException as error:  # noqa: BLE001 - a failed try, reported to the runner
        traceback.print_exc()
        n_items = n_items if n_items is not None else _records_in(mb_spec)
        return Failed(mb_id, n_items, *_error_text(error, log_name), began, time.time())
    return Done(mb_id, n_items, min(n_results, n_items), payload, began, time.time(), note)


def _records_in(spec: dict) -> int | None:
    """The records of a delimited or JSON-lines byte range, counted as its non-blank lines,
    for a mini-batch that failed before it was parsed (a row that does not parse): its items
    then count as failed instead of vanishing from the counts. None when they cannot be
    counted (other kinds know their count; a file gone cannot be read)."""
    if spec.get("kind") == "files":  # blob files whose download failed
        return len(spec["paths"])
    if spec.get("kind") not in ("delimited", "json_lines"):
        return None
    from ..storage import open_file

    options = spec["options"]
    try:
        with open_file(spec["path"], options.get("storage")) as handle:
            handle.seek(spec["start"])
            data = handle.read(spec["end"] - spec["start"])
        text = data.decode(options.get("encoding") or "utf-8", errors="replace")
    except Exception:  # noqa: BLE001 - only a count for the error report; never fail on it
        return None
    return sum(1 for line in text.split("\n") if line.strip())


def _error_text(error: BaseException, log_name: str) -> tuple[str, str]:
    """The exception as ``"Type: message"`` and the traceback being handled, both bounded:
    the full text is in this worker's log (``traceback.print_exc()`` wrote it there)."""
    where = f"the worker's log {log_name}"
    return (
        shorten(f"{type(error).__name__}: {error}", MAX_MESSAGE_CHARS, where),
        shorten(traceback.format_exc(), MAX_TRACEBACK_CHARS, where),
    )


def main() -> None:
    """Run the worker whose arguments arrive on stdin as one JSON document (how a worker
    starts under another interpreter or on a Dask worker): stdin, unlike the command line, is
    not readable by other users; it is /dev/null again before the entry script loads."""
    import json

    args = json.loads(sys.stdin.buffer.read())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    address = args["address"]
    worker_main(
        tuple(address) if isinstance(address, list) else address,
        bytes.fromhex(args["authkey"]),
        args["name"],
        args["node_id"],
        args["spec"],
    )


if __name__ == "__main__":
    # Started as ``python -m jupyter_parallelrun.engine.worker`` under another interpreter
    # (Environment.python.interpreter_path).
    main()
