"""The trajectory store: append, torn lines, resume without duplicate or lost rows."""

from __future__ import annotations

import json

import pytest

from ctxrely.track.trajectory import TrajectoryStore, read_jsonl


def test_append_and_read_back(tmp_path):
    st = TrajectoryStore(tmp_path)
    st.append({"step": 0, "a/cf_acc": 0.5, "nan": float("nan")}, [{"suite": "a", "id": "1", "cf_wins": True}])
    st.append({"step": 5, "a/cf_acc": 0.7})
    rows = st.rows()
    assert [r["step"] for r in rows] == [0, 5]
    assert rows[0]["nan"] is None  # written as JSON null, not the non-standard NaN
    assert st.example_rows() == [{"step": 0, "rows": [{"suite": "a", "id": "1", "cf_wins": True}]}]
    with pytest.raises(ValueError, match="step"):
        st.append({"a/cf_acc": 1.0})


def test_torn_last_line_is_skipped_but_a_bad_middle_line_is_an_error(tmp_path):
    st = TrajectoryStore(tmp_path)
    st.append({"step": 0})
    with open(st.path, "a") as f:
        f.write('{"step": 5, "a/cf')  # crash mid-write
    assert [r["step"] for r in st.rows()] == [0]
    with open(st.path, "a") as f:
        f.write('\n{"step": 10}\n')
    with pytest.raises(ValueError, match=r"trajectory.jsonl, line 2"):
        read_jsonl(st.path)


def test_resume_keeps_rows_up_to_the_checkpoint_and_moves_the_rest_aside(tmp_path):
    st = TrajectoryStore(tmp_path)
    for s in (0, 5, 10, 15):
        st.append({"step": s, "v": s}, [{"suite": "a", "id": "x", "step": s}])
    kept = st.prepare(resume_step=5)
    assert [r["step"] for r in kept] == [0, 5]
    assert [r["step"] for r in st.rows()] == [0, 5]
    assert [r["step"] for r in st.example_rows()] == [0, 5]
    assert [r["step"] for r in st.superseded()] == [10, 15]  # nothing computed is deleted
    # the continued run appends after them: no duplicate steps
    st.append({"step": 10, "v": "new"})
    assert [r["step"] for r in st.rows()] == [0, 5, 10] and st.rows()[-1]["v"] == "new"


def test_fresh_start_in_an_old_folder_supersedes_everything(tmp_path):
    st = TrajectoryStore(tmp_path)
    st.append({"step": 0})
    st.append({"step": 5})
    assert st.prepare(resume_step=0) == []
    assert st.rows() == [] and [r["step"] for r in st.superseded()] == [0, 5]


def test_duplicate_steps_collapse_to_the_last_write(tmp_path):
    st = TrajectoryStore(tmp_path)
    st.append({"step": 0, "v": 1})
    st.append({"step": 5, "v": 1})
    st.append({"step": 5, "v": 2})
    kept = st.prepare(resume_step=5)
    assert [(r["step"], r["v"]) for r in kept] == [(0, 1), (5, 2)]


def test_settings_and_probe_set_round_trip(tmp_path):
    st = TrajectoryStore(tmp_path)
    st.write_settings({"metric": "a/cf_acc", "drop_threshold": 10.0})
    st.write_probe_set([{"suite": "a", "id": "1", "question": "q?"}])
    assert st.settings()["metric"] == "a/cf_acc"
    assert json.loads((tmp_path / "tracking.json").read_text())["drop_threshold"] == 10.0
    assert st.probe_set()[0]["question"] == "q?"
