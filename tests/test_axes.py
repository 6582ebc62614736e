"""The plots' axis decisions (render/axes.py), pure: clipped log axes, integer ticks, markers or a
line, the shared step range. Exact expected values, degenerate cases included."""

from __future__ import annotations

import math

import pytest

from basintui.render.axes import (
    EPS,
    decade_label,
    index_range,
    int_limits,
    int_ticks,
    log_axis,
    loss_axis,
    max_ticks,
    nice_step,
    spectrum_axis,
    spectrum_floor,
    step_range,
    use_markers,
)


def test_the_spectrum_floor_is_a_decade_below_eps_sigma1_rounded_down_to_a_decade():
    assert spectrum_floor(1.0, 1e-14) == EPS / 10  # ε·σ₁ is below the band's lower edge 5e-15
    a = spectrum_axis([1.0, 0.5, 1e-143], 1e-14)
    assert (a.lo, a.hi, a.below) == (-17, 0, 1)
    assert a.ys == (0.0, math.log10(0.5), -17.0)  # the 1e-143 value sits at the floor, counted
    assert a.floor == 1e-17 and a.below_text() == "1 below 1e-17"


def test_a_huge_dynamic_range_does_not_stretch_the_axis():
    sv = [9.246896842579963, 2.2e-22, 1.75e-36, 6.26e-95, 1e-143, 1e-300]
    a = spectrum_axis(sv, 2.4494957025384723e-12)
    assert (a.lo, a.hi, a.below) == (-16, 1, 5)  # ε·9.25 = 2.05e-15, a decade below: 2.05e-16 → 1e-16
    assert a.ys[1:] == (-16.0,) * 5 and min(a.ys) == a.lo
    assert a.ticks == (-15, -10, -5, 0) and a.labels == ("1e-15", "1e-10", "1e-05", "1")


def test_a_zero_spectrum_has_no_log_of_zero_and_a_fixed_axis():
    for sv, tol in (([0.0, 0.0], 0.0), ([0.0], 1e-300), ([], 0.0), ([-0.0, float("nan")], 0.0)):
        a = spectrum_axis(sv, tol)
        assert (a.lo, a.hi) == (-1, 1), sv
        assert a.below == len(sv) and a.ys == (-1.0,) * len(sv)
        assert a.ticks == (-1, 0, 1) and a.labels == ("0.1", "1", "10")
    assert spectrum_floor(0.0, 0.0) is None and spectrum_floor(float("nan"), 1.0) is None


def test_a_single_singular_value():
    a = spectrum_axis([3.0], 3 * 4 * EPS)  # the numpy rule for max(N, kd) = 4
    assert (a.lo, a.hi, a.below) == (-17, 1, 0)  # ε·3 = 6.7e-16 < tol/2 = 1.3e-15; /10 → 1e-17
    assert a.ys == (math.log10(3.0),)
    assert index_range(1) == (0.5, 1.5)


def test_equal_values_give_a_nonempty_axis():
    a = log_axis([2.0, 2.0, 2.0], 0.01)
    assert (a.lo, a.hi, a.below) == (-2, 1, 0) and a.ys == (math.log10(2.0),) * 3
    b = log_axis([1.0, 1.0], 0.1)
    assert (b.lo, b.hi) == (-1, 0)  # the top decade is never the floor's
    c = log_axis([1e-5], 1e-5)
    assert (c.lo, c.hi, c.below) == (-5, -4, 0)


def test_values_exactly_at_the_floor_are_drawn_there_and_not_counted_below():
    a = log_axis([1.0, 1e-5, 9.99e-6, 0.0], 1e-5)
    assert a.lo == -5 and a.ys == (0.0, -5.0, -5.0, -5.0)
    assert a.below == 2 and a.below_text() == "2 below 1e-05"
    b = log_axis([1.0, 3e-6], 5e-6)  # the floor is rounded down to its decade: 3e-6 is above 1e-6
    assert (b.lo, b.below) == (-6, 0)


def test_non_finite_values_are_drawn_at_the_floor_and_a_floor_must_be_positive():
    a = log_axis([float("nan"), float("inf"), 1.0], 0.1)
    assert a.below == 2 and a.ys == (-1.0, -1.0, 0.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive floor"):
            log_axis([1.0], bad)


def test_the_floor_never_goes_subnormal():
    a = log_axis([1e-310, 1.0], 1e-320)
    assert a.lo == -300 and a.below == 1


def test_a_small_tolerance_keeps_the_band_on_the_axis_and_a_large_one_the_top():
    a = spectrum_axis([1.0, 1e-20], 1e-18)  # rtol below ε: the band's lower edge 5e-19 sets the floor
    assert (a.lo, a.below) == (-20, 0)
    b = spectrum_axis([1.0], 10.0)  # a tolerance above σ₁: the band's top edge 20 is on the axis
    assert (b.lo, b.hi) == (-17, 2)


def test_an_overlay_spectrum_shares_the_axis():
    a = spectrum_axis([1.0], 1e-15, extra=[100.0, 0.0])
    assert (a.lo, a.hi) == (-17, 2)  # σ₁ = 100 from the overlay; tol/2 = 5e-16 → 5e-17
    assert len(a.ys) == 1


def test_loss_axis_clips_zero_and_tiny_losses():
    a = loss_axis([1.0, 0.5, 0.0, 1e-5])
    assert (a.lo, a.hi, a.below) == (-5, 0, 1) and a.ys[2] == -5.0
    b = loss_axis([1.0, 1e-200])
    assert (b.lo, b.below) == (-30, 1)  # at most 30 decades below the largest loss
    c = loss_axis([])
    assert (c.lo, c.hi, c.below, c.ys) == (-1, 1, 0, ())
    d = loss_axis([0.0, 0.0])
    assert (d.lo, d.hi, d.below) == (-1, 1, 2)
    e = loss_axis([0.25])
    assert (e.lo, e.hi, e.below) == (-1, 0, 0)


def test_decade_labels():
    assert [decade_label(k) for k in (0, 1, -1, -16, 3, -5, -300)] == [
        "1", "10", "0.1", "1e-16", "1e+03", "1e-05", "1e-300"]


def test_integer_ticks_are_whole_nice_and_few():
    assert int_ticks(0, 150, 5) == [0, 50, 100, 150]
    assert int_ticks(0, 200, 5) == [0, 50, 100, 150, 200]
    assert int_ticks(0, 10, 11) == list(range(11))
    assert int_ticks(0, 10, 4) == [0, 5, 10]
    assert int_ticks(40, 50, 2) == [40, 50]
    assert int_ticks(42, 51, 2) == [50]
    assert int_ticks(11, 13, 5) == [11, 12, 13]
    assert int_ticks(3, 3, 5) == [3]
    assert int_ticks(0, 1, 5) == [0, 1]
    assert int_ticks(2.5, 2.7, 3) == [3]  # no integer inside: the nearest one, never a fraction
    for lo in (0, 1, 7, 41):
        for span in (0, 1, 2, 3, 9, 10, 99, 1000, 123457):
            for most in range(1, 12):
                ticks = int_ticks(lo, lo + span, most)
                assert ticks and all(isinstance(t, int) and lo <= t <= lo + span for t in ticks)
                assert len(ticks) <= max(2, most), (lo, span, most, ticks)


def test_nice_steps_and_tick_counts_for_a_size():
    assert [nice_step(s, 5) for s in (0, 4, 5, 9, 20, 21, 200, 201)] == [1, 1, 2, 5, 5, 10, 50, 100]
    assert max_ticks(12, 3) == 4 and max_ticks(1, 3) == 2 and max_ticks(60, 10) == 6 and max_ticks(5, 0) == 5


def test_integer_limits_keep_values_off_the_frame():
    assert int_limits([]) == (0, 1)
    assert int_limits([12, 12]) == (11, 13)
    assert int_limits([0]) == (0, 1)
    assert int_limits([49, 41, 44]) == (40, 50)


def test_markers_for_few_points_and_the_shared_step_range():
    assert use_markers(0) and use_markers(1) and use_markers(40) and not use_markers(41)
    assert use_markers(5, limit=5) and not use_markers(6, limit=5)
    assert step_range(150) == (0, 150)
    assert step_range(0) == (0, 1)  # steps = 0: still a range
    assert step_range(100, [120]) == (0, 120)  # a run past its planned steps
    assert step_range(100, [20]) == (0, 100)
    assert index_range(36) == (0.5, 36.5) and index_range(0) == (0.5, 1.5)
