"""bench/soak_metrics.py (bench/soak.py's arithmetic) with hand-worked numbers."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from soak_metrics import (RssTracker, WriteGapCounter, messages_lost, rss_kb,  # noqa: E402
                          unexpected_starts)


def test_rss_growth_is_per_pid_and_the_table_shows_the_latest_pid():
    rss = RssTracker()
    rss.record("vla_policy", 10, 1000, t=0.0)
    rss.record("vla_policy", 10, 1100, t=5.0)  # +10 %
    rss.record("vla_policy", 11, 2000, t=10.0)  # respawned: new baseline
    rss.record("vla_policy", 11, 2020, t=15.0)  # +1 %
    rss.record("arm_driver", 12, 500, t=0.0)
    rss.record("arm_driver", 12, 490, t=5.0)  # -2 %
    rss.record("arm_driver", 12, None, t=10.0)  # gone: ignored
    assert rss.growth_pct() == {"vla_policy": 10.0, "arm_driver": -2.0}
    assert rss.table()["vla_policy"] == {"start_mb": round(2000 / 1024, 1), "end_mb": round(2020 / 1024, 1)}
    assert rss.latest_mb("vla_policy") == round(2020 / 1024, 1) and rss.latest_mb("nobody") is None


def test_rss_late_growth_separates_an_early_plateau_from_a_steady_leak():
    rss = RssTracker()
    for t, kb in ((0, 1000), (10, 1100), (20, 1100), (30, 1100), (40, 1100)):  # +10 % early, then flat
        rss.record("plateau", 1, kb, t=float(t))
    for t, kb in ((0, 1000), (10, 1025), (20, 1050), (30, 1075), (40, 1100)):  # +2.5 % every 10 s
        rss.record("leak", 2, kb, t=float(t))
    assert rss.growth_pct() == {"plateau": 10.0, "leak": 10.0}
    # second half: from the first sample at t >= 20 s: plateau 1100 -> 1100, leak 1050 -> 1100
    assert rss.growth_pct(late=True) == {"plateau": 0.0, "leak": round(100 * (1100 / 1050 - 1), 2)}


def test_rss_rebase_starts_the_baseline_at_the_next_sample():
    rss = RssTracker()
    rss.record("vla_policy", 11, 500, t=0.0)  # still loading its model
    rss.rebase("vla_policy")
    rss.record("vla_policy", 11, 900, t=5.0)  # loaded: the baseline
    rss.record("vla_policy", 11, 909, t=10.0)
    assert rss.growth_pct() == {"vla_policy": 1.0}


def test_rss_of_this_process_is_read_and_a_missing_pid_is_none():
    assert rss_kb(os.getpid()) > 0
    assert rss_kb(None) is None


def test_write_gaps_count_hidden_ticks_and_skip_idle_and_overlap():
    counter = WriteGapCounter(period_s=0.02, idle_gap_s=0.5)
    counter.feed([0.00, 0.02, 0.04, 0.10])  # 0.06 s gap = 3 periods: 2 ticks missed
    counter.feed([0.04, 0.10, 0.12])  # overlapping batch: 0.04 and 0.10 already counted
    counter.feed([1.12, 1.14])  # 1.0 s gap: the plan stopped (idle), not a missed tick
    assert counter.writes == 7
    assert counter.missed == 2 and counter.late_gaps == 1 and counter.idle_gaps == 1
    assert counter.as_dict()["worst_gap_ms"] == 60.0
    counter.feed([1.169])  # 0.029 s = 1.45 periods: rounds to one period, on time
    assert counter.missed == 2
    with pytest.raises(ValueError):
        WriteGapCounter(period_s=0.02, idle_gap_s=0.01)


def test_writes_read_together_after_a_gap_are_not_missed_ticks():
    counter = WriteGapCounter(period_s=0.02, idle_gap_s=0.5)
    counter.feed([0.00, 0.02, 0.06, 0.06])  # 2 periods, then 2 writes read at once: on time, the reader was late
    assert counter.writes == 4 and counter.missed == 0
    counter.feed([0.12, 0.12])  # 3 periods, 2 writes: 1 tick missed
    assert counter.writes == 6 and counter.missed == 1 and counter.late_gaps == 1


def test_a_group_split_across_two_batches_is_counted_once():
    counter = WriteGapCounter(period_s=0.02, idle_gap_s=0.5)
    counter.feed([0.00, 0.02, 0.06])  # so far: 2 periods, 1 write -> 1 missed
    assert counter.missed == 1 and counter.late_gaps == 1
    counter.feed([0.02, 0.06, 0.06, 0.08])  # the next batch holds the group's second write: not missed after all
    assert counter.writes == 5 and counter.missed == 0 and counter.late_gaps == 0


def test_messages_lost_against_the_rate_before_the_fault():
    assert messages_lost(30.0, 5.0, 140) == 10  # 150 expected
    assert messages_lost(30.0, 5.0, 155) == 0  # more than before: nothing lost
    assert messages_lost(29.9, 5.0, 149) == 0  # 149.5 expected: half a message is not a lost one


def test_unexpected_starts_are_those_no_kill_explains():
    assert unexpected_starts(starts=1, kills=0) == 0
    assert unexpected_starts(starts=3, kills=2) == 0
    assert unexpected_starts(starts=4, kills=2) == 1
