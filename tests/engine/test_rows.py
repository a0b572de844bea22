"""summary_only counts run()'s results without formatting them: the count and the note are
what the rows append_row writes would give, and what is no records is refused the same way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jupyter_parallelrun.engine.rows import result_count, result_rows

RESULTS = [
    (["a", "b", "c"], 3),
    (["a", None, "c"], 3),
    ((1, 2), 4),
    ([], 2),
    (np.array([0.5, 1.5]), 2),
    (pd.DataFrame({"id": [1, 2], "score": [0.1, 0.2]}), 2),
    (pd.DataFrame({"when": pd.to_datetime(["2026-01-01", "2026-01-02"])}), 3),
    (pd.DataFrame({"id": []}), 1),
]


@pytest.mark.parametrize(("result", "n_items"), RESULTS)
def test_the_count_is_that_of_the_rows_and_the_note_the_same(result, n_items):
    rows, note = result_rows(result, n_items)
    assert result_count(result, n_items) == (len(rows), note)


@pytest.mark.parametrize("result", [None, "one string", {"a": 1}, np.zeros((2, 2)), 3])
def test_what_is_no_records_is_refused_by_both(result):
    with pytest.raises(TypeError) as rows_error:
        result_rows(result, 1)
    with pytest.raises(TypeError) as count_error:
        result_count(result, 1)
    assert str(count_error.value) == str(rows_error.value)
    assert "it must return a list" in str(count_error.value)
