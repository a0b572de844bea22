"""The loop and worker processes that ``test_scheduler_properties.py``'s machine plays.

:class:`Loop` carries out what a :class:`SchedulerState` hands out (a process to start, a
mini-batch to send, a process to end) as the real loop would, keeps a ledger of what was sent,
recorded and retried, and knows each worker process (:class:`Process`): what was sent to it,
whether it said hello, finished init(), died, or was asked to end. Its assertions check what
must hold of each instruction as it comes out; the machine's rules decide what happens next.
"""

from __future__ import annotations

from dataclasses import replace

from jupyter_parallelrun.engine.messages import Beat, Bye, Done, Failed, InitFailed, Ready
from jupyter_parallelrun.engine.mini_batch import MiniBatch
from jupyter_parallelrun.engine.scheduler_events import (
    CountRetry,
    EndProcess,
    Finish,
    InputExhausted,
    InputFormed,
    ProcessExited,
    Received,
    RecordError,
    RecordResult,
    Send,
    StartWorker,
    Tick,
    WorkerConnected,
    WorkerEnded,
    WorkersStopped,
    WorkerStarted,
)
from jupyter_parallelrun.engine.scheduler_state import SchedulerSettings, SchedulerState

#: What a worker's run() says about items without a result (told apart from failed tries).
NOTE = "NOTE: fewer rows than items"
#: Seconds that time may move by: past the exit grace (0.3 s), and past the machine's limits
#: (run_invocation_timeout=10, heartbeat_timeout=20, the connect grace of 30).
STEPS = (0.2, 1.0, 1.0, 5.0, 11.0, 21.0, 31.0)
#: What a process may do next (a result most often).
RESULTS = ("ok", "ok", "ok", "part", "note", "raise")
WORK = (*RESULTS, "beat", "init fails", "hello only")
#: When the run starts (as a wall clock reads).
T0 = 1_000_000.0
#: A late ProcessExited comes past the exit grace, so that only its incarnation keeps it out.
EXIT_LATE = 1.0


class Process:
    """The machine's record of one worker process (one incarnation of a worker)."""

    def __init__(self, worker: str, incarnation: int) -> None:
        self.worker, self.incarnation = worker, incarnation
        self.started = self.connected = self.ready = self.dead = self.ended = False
        self.pipe: list[int] = []  # ids sent and not answered, oldest first
        self.taken_back: list[int] = []  # what the state took back from it once it ended
        self.end: EndProcess | None = None


class Loop:
    """The loop around one :class:`SchedulerState`, and its ledger (see the module docstring)."""

    def begin(self, settings: SchedulerSettings, n_input: int, items: list[int]) -> None:
        """A run of ``n_input`` mini-batches (``items``: how many items each has) after the
        ``settings.committed`` ones an earlier runner committed."""
        self.settings, self.state = settings, SchedulerState(settings)
        self.earlier = dict(settings.counters)
        self.before = len(settings.committed)
        self.last_id = self.before + n_input
        self.items = {self.before + i: n for i, n in enumerate(items)}
        self.now, self.next_id, self.exhausted, self.over = T0, self.before, False, False
        self.processes: dict[tuple[str, int], Process] = {}
        self.recorded: list[dict] = []
        self.failed_tries: dict[int, list[int]] = {}
        self.retries = 0
        self.outcome: Finish | None = None

    # -- carrying out instructions ------------------------------------------------------------

    def feed(self, *events) -> list:
        out = self.state.handle(*events)
        for instruction in out:
            self.carry_out(instruction)
        # As the loop does, the input is formed as soon as the state wants more of it.
        while not self.exhausted and self.state.wants_input():
            out += self.form()
        return out

    def carry_out(self, instruction) -> None:
        kind = type(instruction)
        if kind is StartWorker:
            assert self.outcome is None, f"{instruction} after {self.outcome}"
            key = (instruction.worker, instruction.incarnation)
            assert key not in self.processes, f"{key} started twice"
            self.processes[key] = Process(*key)
        elif kind is Send:
            self.sent(instruction)
        elif kind is EndProcess:
            process = self.processes[(instruction.worker, instruction.incarnation)]
            assert process.end is None and not process.ended, f"{instruction} twice"
            process.end = instruction
        elif kind is RecordResult:
            record = instruction.record
            assert record["mb_id"] not in self.recorded_ids(), f"{record['mb_id']} recorded twice"
            self.recorded.append(record)
        elif kind is RecordError and instruction.row["mb_id"] is not None:
            row = instruction.row
            if row["exception"] != NOTE:
                self.failed_tries.setdefault(row["mb_id"], []).append(row["try"])
        elif kind is CountRetry:
            self.retries += 1
        elif kind is Finish:
            assert self.outcome in (None, instruction), f"{instruction} after {self.outcome}"
            self.outcome = instruction

    def sent(self, send: Send) -> None:
        mb_id = send.mini_batch.id
        assert self.outcome is None, f"mini-batch {mb_id} sent after {self.outcome}"
        assert mb_id not in self.recorded_ids(), f"recorded mini-batch {mb_id} sent again"
        assert mb_id not in self.state.held, f"held mini-batch {mb_id} sent again"
        assert len(self.failed_tries.get(mb_id, [])) < self.settings.run_max_try, (
            f"mini-batch {mb_id} sent for try {len(self.failed_tries[mb_id]) + 1}"
        )
        process = self.current(send.worker)
        assert process.incarnation == send.incarnation and process.ready and process.end is None
        process.pipe.append(mb_id)

    def recorded_ids(self) -> list[int]:
        return [record["mb_id"] for record in self.recorded]

    def current(self, worker: str) -> Process:
        return self.processes[(worker, self.state.workers[worker].restarts)]

    def live(self, test) -> list[Process]:
        """The current processes, not dead, that ``test`` accepts, while the run goes on."""
        if self.over:
            return []
        current = [self.current(worker) for worker in self.state.workers]
        return [process for process in current if not process.dead and test(process)]

    def exited(self) -> list[ProcessExited]:
        """What the loop finds polling the exit codes of the processes not declared lost."""
        current = [self.current(worker) for worker in self.state.workers]
        return [
            ProcessExited(self.now, p.worker, p.incarnation)
            for p in current
            if p.dead and p.started and p.end is None
        ]

    def received(self, process: Process, message) -> list:
        return self.feed(Received(self.now, process.worker, process.incarnation, message))

    # -- the input --------------------------------------------------------------------------

    def form(self) -> list:
        if self.next_id == self.last_id:
            self.exhausted = True
            return self.feed(InputExhausted(self.now))
        mb_id, n_items = self.next_id, self.items[self.next_id]
        self.next_id += 1
        spec = {"kind": "files", "paths": [f"/data/{mb_id}/{i}" for i in range(n_items)]}
        return self.feed(InputFormed(self.now, MiniBatch(mb_id, spec, n_items), 120))

    def start_step(self, process: Process) -> None:
        """The backend started the process, or (once it did) the process said hello."""
        pid, key = 1000 + len(self.processes), (process.worker, process.incarnation)
        if not process.started:
            process.started = True
            self.feed(WorkerStarted(self.now, *key, pid, None))
        elif not process.connected:
            process.connected = True
            self.feed(WorkerConnected(self.now, *key, pid))

    def init_ends(self, process: Process, fails: bool) -> None:
        if fails:
            process.dead = True  # it ends itself once the runner closes the connection
            self.received(process, InitFailed("ImportError: no module named x", "tb"))
        else:
            process.ready = True
            self.received(process, Ready(0.5))

    def answer(self, process: Process, outcome: str) -> None:
        """The process's run() of its oldest mini-batch returned, or raised."""
        mb_id = process.pipe[0]
        if process.end is None:  # once it is being ended, what it still says is discarded
            process.pipe.pop(0)
        n, began = self.items[mb_id], self.now - 0.5
        if outcome == "raise":
            message = Failed(mb_id, n, "ValueError: bad item", "tb", began, self.now)
        else:
            n_ok = n if outcome == "ok" else n - 1
            note = NOTE if outcome == "note" else None
            message = Done(mb_id, n, n_ok, b"row\n" * n_ok, began, self.now, note)
        self.received(process, message)

    def ended(self, process: Process, code, host_lost: bool) -> None:
        """A process the state asked to end has ended: what was sent to it is the state's
        again, to retry or to fail."""
        process.ended = process.dead = True
        process.taken_back, process.pipe = process.pipe, []
        end = process.end
        event = WorkerEnded(self.now, end.worker, end.incarnation, end.reason, end.kill, code)
        self.feed(replace(event, host_lost=host_lost))

    def stop_workers(self) -> None:
        """Once the outcome is decided, the loop stops the workers: the polite ones say bye."""
        for name in self.outcome.polite:
            process = self.current(name)
            if not process.dead and process.ready and process.end is None:
                self.received(process, Bye())
        self.feed(WorkersStopped(self.now, {name: -9 for name in self.state.workers}))
        # What the stopped processes never answered stays theirs: the run is over, and the
        # next runner runs what was not committed.
        for process in self.processes.values():
            process.dead = True
        self.over = True

    def current_of(self, process: Process) -> Process:
        return self.current(process.worker)

    def snapshot(self) -> tuple:
        s = self.state
        workers = [
            (w.state, [f.mini_batch.id for f in w.queue], w.restarts, w.heartbeat, w.exit_seen)
            for w in s.workers.values()
        ]
        waiting = [(f.mini_batch.id, f.tries) for f in s.waiting]
        return dict(s.counters), dict(s.mini_batches), dict(s.tries), waiting, workers, s.outcome

    def run_to_its_end(self) -> None:
        """Every process behaves from here on: the run must end, and a completed one has
        recorded every mini-batch of its input once."""
        for _ in range(1000):
            if self.over:
                break
            for process in [p for p in self.processes.values() if p.end and not p.ended]:
                self.ended(process, -9, False)
            # The last worker first: later mini-batches finish before earlier ones, so that
            # preserve_order holds results (and new input) back on the way.
            for process in reversed(self.live(lambda p: p.end is None)):
                if not process.connected:
                    self.start_step(process)
                elif not process.ready:
                    self.init_ends(process, fails=False)
                elif process.pipe:
                    self.answer(process, "ok")
                else:
                    self.received(process, Beat(1, 0.1))
            if self.outcome is not None:
                self.stop_workers()
            else:
                self.now += 1.0
                self.feed(*self.exited(), Tick(self.now))
        assert self.over, f"the run did not end: {self.snapshot()}"
        if self.outcome.outcome == "Completed":
            recorded, expected = sorted(self.recorded_ids()), list(range(self.before, self.last_id))
            assert recorded == expected, f"completed having recorded {recorded} of {expected}"
