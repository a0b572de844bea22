"""The benchmark harness's own code path, on a small input: a W2 run whose every mini-batch is
found in the store and the log, and a report rendered from its figures. No timing is asserted."""

from __future__ import annotations

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
