"""bintut.files.metrics: metrics.jsonl is appended to and repaired inside its run folder only -- a symbolic
link in its place is refused, never written through (issue 24, kind 1)."""

from __future__ import annotations

import json

import pytest

from bintut.files.metrics import MetricsError, MetricsLog, read_metrics


@pytest.fixture
def outside(tmp_path):
    target = tmp_path / "elsewhere" / "precious.txt"
    target.parent.mkdir()
    target.write_text('{"epoch": 1, "mine": true}\n{"torn')  # a torn last line: what a repair would cut off
    return target


def test_a_metrics_file_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path, outside):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").symlink_to(outside)
    before = outside.read_bytes()
    with pytest.raises(MetricsError, match=f"metrics.jsonl is a symbolic link \\(to {outside}\\); a run writes only "
                                           "inside its folder") as info:
        MetricsLog(run / "metrics.jsonl", epochs_done=1, last_row={"epoch": 1})
    assert "\n" not in str(info.value)
    assert outside.read_bytes() == before  # neither truncated nor appended to


def test_a_link_put_in_place_after_opening_is_not_written_through(tmp_path, outside):
    run = tmp_path / "run"
    run.mkdir()
    log = MetricsLog(run / "metrics.jsonl")
    log.append({"epoch": 1, "loss": 1.5})
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(outside)
    before = outside.read_bytes()
    with pytest.raises(MetricsError, match="is a symbolic link"):
        log.append({"epoch": 2, "loss": 1.0})
    assert outside.read_bytes() == before


def test_a_dangling_link_is_not_created_through_either(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    target = tmp_path / "created-outside.jsonl"
    (run / "metrics.jsonl").symlink_to(target)
    with pytest.raises(MetricsError, match="is a symbolic link"):
        MetricsLog(run / "metrics.jsonl")
    assert not target.exists()


def test_a_plain_metrics_file_is_still_appended_and_repaired(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"epoch": 1}) + "\n" + '{"epo')
    with pytest.warns(UserWarning, match="cutting off its torn last line"):
        log = MetricsLog(path, epochs_done=1)
    log.append({"epoch": 2})
    assert read_metrics(path) == [{"epoch": 1}, {"epoch": 2}]


def test_torn_last_metrics_line_is_cut_off_with_a_warning(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3, "hard_a')  # a write cut short
    with pytest.warns(UserWarning, match="torn last line"):
        assert [r["epoch"] for r in read_metrics(path)] == [1, 2]
    with pytest.warns(UserWarning, match="cutting off its torn last line"):
        log = MetricsLog(path, epochs_done=2)
    log.append({"epoch": 3})
    assert path.read_text() == '{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3}\n'
    path.write_text('{"epoch": 1}\nnot json\n{"epoch": 3}\n')
    with pytest.raises(MetricsError, match="metrics.jsonl, line 2: not a metrics row"):
        read_metrics(path)


def test_metrics_log_is_not_rewritten_and_recovers_the_row_the_checkpoint_carries(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n')
    stamp = path.stat()
    MetricsLog(path, epochs_done=2)  # what every resume of a finished run does
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (stamp.st_ino, stamp.st_mtime_ns, stamp.st_size)
    MetricsLog(path, epochs_done=3, last_row={"epoch": 3})  # a crash came between checkpoint and row
    assert [r["epoch"] for r in read_metrics(path)] == [1, 2, 3]
    MetricsLog(path, epochs_done=1)  # rows of epochs to be redone go, through a new file
    assert path.read_text() == '{"epoch": 1}\n' and path.stat().st_ino != stamp.st_ino
