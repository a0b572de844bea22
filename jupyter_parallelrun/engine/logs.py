"""The log files a step run leaves behind (SPEC §5), under ``<step run>/logs/``.

- ``job_progress_overview.txt``: counters and worker states, rewritten as the run goes (at
  most once per ``OVERVIEW_INTERVAL`` seconds, and once more when the logs are closed);
- ``job_result.txt``: the final status and summary;
- ``job_error.txt``: the errors, grouped by exception, with the inputs they hit;
- ``mini_batches.jsonl``: one record per finished mini-batch (inputs, tries, worker, timings,
  outcome, error);
- ``runner.txt``: what the runner did (workers started, lost, retried);
- ``resource_usage.csv``: CPU seconds and resident memory of every worker process, sampled
  every ``resource_monitor_interval`` seconds;
- ``workers/<process>.txt``: everything one worker process printed or logged.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

#: Seconds between rewrites of the progress overview: a rewrite is a file replace, which costs
#: about a millisecond, and the scheduler reports state after every commit.
OVERVIEW_INTERVAL = 1.0
#: How the log files write what UTF-8 cannot encode: as ``\udcXX`` escapes.
ESCAPE = "backslashreplace"


def _line_encoder():
    """``json.JSONEncoder().encode``, the same text, with its C encoder made once:
    ``encode()`` makes a new one per call, a third of a record's time at tens of thousands
    of records a second. (Python without the C encoder gets ``encode`` itself.)"""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder().encode
    plain = json.JSONEncoder()
    encoder = make(
        None,
        plain.default,
        json.encoder.encode_basestring_ascii,
        None,
        ": ",
        ", ",
        False,
        False,
        True,
    )
    return lambda record: "".join(encoder(record, 0))


#: A dict of JSON values as JSON text, exactly as ``json.dumps`` writes it (ASCII only).
encode_json = _line_encoder()


class StepLogs:
    """Writes the logs of one step run."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        (self.folder / "workers").mkdir(parents=True, exist_ok=True)
        # A file name that is not UTF-8 is written escaped (see error_text.printable).
        self._runner = open(  # noqa: SIM115
            self.folder / "runner.txt", "a", buffering=1, encoding="utf-8", errors=ESCAPE
        )
        self._mini_batches = open(  # noqa: SIM115
            self.folder / "mini_batches.jsonl", "a", encoding="utf-8", errors=ESCAPE
        )
        self._overview_written = float("-inf")
        self._overview_pending: str | None = None
        self._resources = None

    def resources(self, worker: str, pid: int | None, rss: int, cpu: float) -> None:
        if self._resources is None:
            path = self.folder / "resource_usage.csv"
            new = not path.exists()
            self._resources = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            if new:
                self._resources.write("time,process,pid,rss_bytes,cpu_seconds\n")
        self._resources.write(f"{time.time():.3f},{worker},{pid},{rss},{cpu:.3f}\n")

    def worker_log(self, name: str) -> Path:
        return self.folder / "workers" / f"{name}.txt"

    def runner(self, line: str) -> None:
        self._runner.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def mini_batches(self, records: list[dict[str, Any]], specs: list[str]) -> None:
        """One line per record; ``specs`` are the records' specs already as JSON."""
        if not records:
            return
        # Only run_id and mb_id, which hold no quote, come before the spec: the first
        # '"spec": null' of the line is the spec's place.
        lines = [
            encode_json({**record, "spec": None}).replace('"spec": null', '"spec": ' + spec, 1)
            for record, spec in zip(records, specs, strict=True)
        ]
        self._mini_batches.write("\n".join(lines) + "\n")
        self._mini_batches.flush()

    def overview(
        self,
        run_id: str,
        counters: dict[str, int],
        mb_total: int | None,
        workers: list[dict[str, Any]],
    ) -> None:
        lines = [
            f"step run {run_id} at {time.strftime('%Y-%m-%d %H:%M:%S')}",
            f"mini-batches: {counters['mb_done']} done, {counters['mb_failed']} failed, "
            f"{mb_total if mb_total is not None else '?'} in all, {counters['retries']} retries",
            f"items: {counters['items_done']} done, {counters['items_failed']} failed",
            "",
        ]
        lines += [
            f"{w['name']} node {w['node_id']} pid {w['pid']}: {w['state']}, "
            f"{w['done']} done, {w['failed']} failed, {w['restarts']} restarts"
            for w in workers
        ]
        self._overview_pending = "\n".join(lines) + "\n"
        if time.monotonic() - self._overview_written >= OVERVIEW_INTERVAL:
            self._write_overview()

    def _write_overview(self) -> None:
        if self._overview_pending is None:
            return
        path = self.folder / "job_progress_overview.txt"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self._overview_pending, encoding="utf-8", errors=ESCAPE)
        tmp.replace(path)
        self._overview_pending = None
        self._overview_written = time.monotonic()

    def result(self, status: str, summary: str, errors: list[dict[str, Any]]) -> None:
        (self.folder / "job_result.txt").write_text(
            f"{status}\n{summary}\n", encoding="utf-8", errors=ESCAPE
        )
        kinds = Counter(e["exception"] for e in errors)
        lines = [f"{len(errors)} errors"] + [f"{n:6d} × {kind}" for kind, n in kinds.most_common()]
        lines.append("")
        for error in errors:
            lines.append(
                f"[mini-batch {error['mb_id']}, try {error['try']}, {error['worker']}] "
                f"{error['item']}: {error['exception']}"
            )
            if error.get("traceback"):
                lines.append(error["traceback"].rstrip())
        (self.folder / "job_error.txt").write_text(
            "\n".join(lines) + "\n", encoding="utf-8", errors=ESCAPE
        )

    def close(self) -> None:
        self._write_overview()
        self._runner.close()
        self._mini_batches.close()
        if self._resources is not None:
            self._resources.close()
