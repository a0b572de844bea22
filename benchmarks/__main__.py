"""The benchmark harness: ``python -m benchmarks [--quick] [--only W1,W2,...]``.

Runs each workload against its baselines in this one invocation, prints the figures and the
ratios, and writes ``benchmarks/RESULTS.md`` (``--quick``: ``benchmarks/data/RESULTS.quick.md``,
small sizes, for checking the harness in about a minute). Workloads: W1 images, W2 scheduler
overhead, W3 tabular, W4 scale of the input, W5 reuse, P the profile of the per-mini-batch
overhead, D the W1 job on a one-machine Dask cluster against the local backend, W6 the W1 job
reading its images from Azurite (the Azure Storage emulator) against local files, V the cost of
one RunDetails poll on a run of 10,000 errors and 100,000 mini-batches. Generated
inputs are cached in ``benchmarks/data/`` (git-ignored). A workload run alone with ``--only``
replaces its own section of RESULTS.md and keeps the others.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common import DATA, HERE, machine, versions  # noqa: E402
from report import render  # noqa: E402

WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "P", "D", "W6", "V")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument(
        "--only", default=",".join(WORKLOADS), help="comma-separated workloads (W1,...,W6,P,D,V)"
    )
    parser.add_argument(
        "--w6-images", type=int, help="W6's image count (default 20,000; --quick 2,000)"
    )
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument("--ray-python", help="a Python with ray[data] for W1's baseline (c)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the runs' workspaces (in benchmarks/data/work)"
    )
    args = parser.parse_args(argv)
    chosen = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    unknown = sorted(set(chosen) - set(WORKLOADS))
    if unknown:
        parser.error(f"--only takes {', '.join(WORKLOADS)}; got {', '.join(unknown)}")

    mode = "quick" if args.quick else "full"
    DATA.mkdir(exist_ok=True)
    saved = DATA / f"results-{mode}.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    results["machine"], results["versions"] = machine(), versions()
    started = time.perf_counter()
    failed = []
    job = None
    for name in WORKLOADS:
        if name not in chosen:
            continue
        begun = time.perf_counter()
        try:
            section = _run(name, args, job)
        except Exception:  # noqa: BLE001 - one broken workload must not hide the others
            traceback.print_exc()
            failed.append(name)
            failure = ["failed:", "", "```", traceback.format_exc(), "```"]
            section = {"title": name, "lines": failure, "targets": [], "data": {}}
        job = section.pop("job", job)
        section["seconds"] = time.perf_counter() - begun
        section["date"] = time.strftime("%Y-%m-%d %H:%M")
        results.setdefault("sections", {})[name] = section
        saved.write_text(json.dumps(results, indent=1, default=str))
    if not args.keep:  # a full run leaves gigabytes of outputs, stores and logs
        for folder in (DATA / "work").glob(f"*-{os.getpid()}"):
            shutil.rmtree(folder, ignore_errors=True)
    out = DATA / "RESULTS.quick.md" if args.quick else HERE / "RESULTS.md"
    # The saved results are this checkout's (git-ignored): the file keeps what they lack.
    text = render(results, quick=args.quick, previous=out.read_text() if out.exists() else "")
    out.write_text(text)
    print()
    print(text)
    print(f"harness: {time.perf_counter() - started:.0f} s; wrote {out}")
    return 1 if failed else 0


def _run(name: str, args: argparse.Namespace, job) -> dict:
    if name == "W1":
        from w1_images import run

        return run(args.quick, args.processes, args.ray_python)
    if name == "W2":
        from w2_overhead import run

        return run(args.quick, args.processes)
    if name == "W3":
        from w3_tabular import run

        return run(args.quick, args.processes)
    if name == "W4":
        from w4_listing import run

        return run(args.quick, args.processes)
    if name == "W5":
        from w5_reuse import run

        return run(args.quick, job, args.processes)
    if name == "V":
        from v_view_poll import run

        return run(args.quick, args.processes)
    if name == "D":
        from w1_dask import run

        return run(args.quick, args.processes)
    if name == "W6":
        from w6_blob import run

        return run(args.quick, args.processes, args.w6_images)
    from profile_overhead import run

    return run(args.quick, args.processes)


if __name__ == "__main__":
    sys.exit(main())
