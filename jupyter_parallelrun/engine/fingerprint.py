"""An input's fingerprint taken in a process of its own, while the step runs.

A step that may not reuse records its input's fingerprint anyway, for later runs that may
(see ``step_input.count_mini_batches``). The fingerprint stats every file of the input: for
100,000 files about two seconds of Python on the runner's counting thread, which held the
interpreter's lock against the scheduler's thread all that time, and took it from it at every
release (every row SQLite writes in a commit is one). In a process of its own, at the lowest
priority, it runs on what the runner and the workers leave of the machine's cores, and the
runner's thread only waits for its answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ..input_data import InputData
from . import python_path
from .parent_death import end_with_parent

#: The end of what a failed fingerprint process wrote that its error carries.
STDERR_CHARS = 2000


def fingerprint_apart(data: InputData) -> str:
    """``data.fingerprint()``, the same text, computed by a child Python.

    The definition travels on stdin (it may hold a datastore's credentials: argv is readable
    by every user of the machine).

    Raises
    ------
    RuntimeError
        The child failed (a file that vanished meanwhile, a blob container gone): its error.
    """
    done = subprocess.run(
        [sys.executable, "-m", __name__, str(os.getpid())],
        input=json.dumps(data.to_spec()).encode(),
        capture_output=True,
        env={**os.environ, "PYTHONPATH": python_path()},
        check=False,
    )
    if done.returncode != 0:
        error = done.stderr.decode("utf-8", "replace")[-STDERR_CHARS:]
        raise RuntimeError(f"the input's fingerprint could not be taken:\n{error}")
    return done.stdout.decode().strip()


def main() -> None:
    """Print the fingerprint of the input whose definition comes on stdin."""
    # Nothing is left running once the runner is gone (killed, or its machine's session).
    end_with_parent(int(sys.argv[1]) if len(sys.argv) > 1 else None)
    # The step's own processes come first: on a machine whose cores they fill, this one
    # would take a core's share from the scheduler, which every worker waits on.
    os.nice(19)
    print(InputData(json.loads(sys.stdin.buffer.read())).fingerprint())


if __name__ == "__main__":
    main()
