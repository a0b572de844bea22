"""The benchmark harness's own code path, on a small input: a W2 run whose every mini-batch is
found in the store and the log, and a report rendered from its figures. No timing is asserted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_w2_harness_run_tracks_every_mini_batch(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import common
    import report
    import w2_overhead

    monkeypatch.setattr(common, "DATA", tmp_path)
    files = w2_overhead.files_input(300)
    assert (tmp_path / "files-300" / ".complete").exists()

    row = w2_overhead.run_ours(files, 1, 2, "smoke")  # raises unless every count matches

    assert (row["mini_batches"], row["items"]) == (300, 300)
    assert row["mb_per_s"] > 0 and row["first_started"] is not None
    text = report.render(
        {
            "machine": common.machine(),
            "versions": common.versions(),
            "sections": {
                "W2": {
                    "title": "W2 scheduler overhead",
                    "lines": ["figures"],
                    "targets": [common.Target("W2", "a target", "measured", True).as_dict()],
                }
            },
        },
        quick=True,
    )
    assert "| W2 | a target | measured | yes |  |" in text


@pytest.mark.slow
def test_w6_harness_runs_the_image_job_from_azurite_and_locally(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import common
    import w6_blob

    monkeypatch.setattr(common, "DATA", tmp_path)
    section = w6_blob.run(quick=True, processes=1, count=30)  # raises unless all 30 are scored

    assert len(section["data"]["local"]) == len(section["data"]["blob"]) == 1
    assert section["data"]["azurite_cpu"][0] > 0
    assert section["targets"][0]["workload"] == "W6"
    assert (tmp_path / "azurite-30" / "uploaded").read_text() == "30"


def test_benchmark_p_names_functions_that_exist(monkeypatch):
    """P finds each function it reports by where it is defined: one that moved fails here, not
    as a row that reads 0 (or, for the call count, a division by 1) in RESULTS.md."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import profile_overhead as p

    parts = (*p.RUNNER_PARTS, *p.WORKER_PARTS, ("", p.SCHEDULER_LOOP))
    named = [function for _, function in parts if not isinstance(function, tuple)]
    functions = p.profiled_functions(parts)
    assert sorted(functions) == sorted(named)
    assert all(
        name == f.rsplit(".", 1)[-1].rsplit(":", 1)[-1] for f, (_, _, name) in functions.items()
    )
    with pytest.raises(LookupError, match="partition:load_mini_batch"):
        p.profiled_functions([("moved", "jupyter_parallelrun.engine.partition:load_mini_batch")])


def test_a_run_with_only_keeps_the_other_workloads_of_results_md(monkeypatch):
    """The harness's saved results are the checkout's own (git-ignored): ``--only P`` in a
    fresh clone knows P alone, and RESULTS.md keeps the other workloads' rows and sections."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import report

    previous = (BENCHMARKS / "RESULTS.md").read_text()
    target = {"workload": "P", "text": "a target", "measured": "new", "met": True, "gap": ""}
    results = {
        "machine": {"cpu": "cpu", "cores": 2, "memory": "1 GiB", "system": "os", "date": "now"},
        "versions": {},
        "sections": {"P": {"title": "P again", "lines": ["new figures"], "targets": [target]}},
    }
    text = report.render(results, quick=False, previous=previous)
    for heading in ("## W1 images", "## W2 scheduler overhead", "## W6 blob input"):
        assert heading in previous and heading in text
    kept = [line for line in previous.splitlines() if line.startswith("| W2 |")]
    assert kept and all(line in text for line in kept)
    assert "## P again" in text and "new figures" in text
    assert "## P profile of the per-mini-batch overhead" not in text
    assert text.count("## Findings") == 1


def test_the_tabular_limit_pins_its_own_processes_only(tmp_path, monkeypatch):
    """W3's baseline runs its processes with one math thread each, and leaves the environment
    of the process that called it as it was: the workloads measured after it must not run
    pinned (nor lose a pin the user had set)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import limit_tabular_baseline as limit

    table = tmp_path / "table.csv"
    features = ",".join(limit.FEATURES)
    rows = "".join(f"{i}," + ",".join(["0.5"] * len(limit.FEATURES)) + "\n" for i in range(50))
    table.write_text(f"id,{features}\n{rows}")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")

    result = limit.run_limit_tabular(str(table), 2, size=256)

    assert "OMP_NUM_THREADS" not in os.environ and "MKL_NUM_THREADS" not in os.environ
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
    assert result["rows"] == 50 and result["ranges"] > 2 and result["pinned"]
