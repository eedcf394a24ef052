"""bench/scale_parts.py's account of who had the machine's cores during the host loss: the
/proc readings it is built from, and the window's figures."""

from __future__ import annotations

import os

import pytest

from bench.scale_parts import CpuSample, cpu_between, machine_seconds, thread_schedstat

TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def test_machine_seconds_counts_iowait_as_idle_and_steal_as_busy() -> None:
    # cpu  user nice system idle iowait irq softirq steal guest guest_nice
    busy, idle = machine_seconds(
        f"cpu  {TICK * 10} {TICK * 1} {TICK * 4} {TICK * 50} {TICK * 5} 0 {TICK * 2} {TICK * 3} {TICK * 7} 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    )
    assert (busy, idle) == (20.0, 55.0)  # guest (7) is inside user already: not added


def test_machine_seconds_refuses_what_is_not_proc_stat() -> None:
    for text in ("", "intr 1 2 3", "cpu 1 2 3"):
        with pytest.raises(ValueError):
            machine_seconds(text)


def test_thread_schedstat_reads_nanoseconds() -> None:
    assert thread_schedstat("2500000000 750000000 1234\n") == (2.5, 0.75)


def test_the_window_says_how_busy_the_machine_was_and_who_used_it() -> None:
    before = CpuSample(busy=100.0, idle=300.0, processes={"controller": 50.0, "etcd": 10.0, "gone": 1.0}, pass_thread=(40.0, 5.0))
    # 10 s of CORES cores: 75 % busy
    after = CpuSample(busy=100.0 + 7.5 * CORES, idle=300.0 + 2.5 * CORES, processes={"controller": 58.04, "etcd": 13.3}, pass_thread=(45.41, 6.16))
    window = cpu_between(before, after, 10.04)
    assert window["seconds"] == 10.0
    assert window["machine_busy_cores"] == round(0.75 * CORES, 2)
    assert window["cores"] == CORES
    assert window["cpu_s"] == {"controller": 8.0, "etcd": 3.3}  # (a process that ended is left out)
    assert window["pass_thread"] == {"on_core_s": 5.41, "waiting_for_core_s": 1.16}


def test_an_empty_window_has_no_busy_share() -> None:
    sample = CpuSample(busy=1.0, idle=1.0, processes={}, pass_thread=(0.0, 0.0))
    assert cpu_between(sample, sample, 0.0)["machine_busy_cores"] is None
