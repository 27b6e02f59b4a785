"""The scale head and its online calibration per served model, on synthetic streams with a known truth."""

import math

import numpy as np
import pytest

from ecoserve.core.rl_buckets import NUM_BUCKETS
from ecoserve.predictor.calibration import MIN_SLOPE_RECORDS, Scale
from ecoserve.predictor.online import OnlineCalibrator, OnlineConfig

PRIOR = Scale(intercept=3.0, slope=1.0, offset=0.3, bucket_offsets=(math.nan,) * NUM_BUCKETS, quantile=0.9, n=0)


def _stream(rng, n, intercept=5.0, slope=0.8, noise=0.5):
    scores = rng.normal(size=n)
    tokens = np.maximum(1, np.rint(np.expm1(intercept + slope * scores + rng.normal(0, noise, n)))).astype(int)
    return scores, tokens


def test_scale_fits_the_line_and_its_reservation_covers_q():
    rng = np.random.default_rng(0)
    s, t = _stream(rng, 4000)
    scale = Scale.fit(s, t, 0.9)
    assert scale.slope == pytest.approx(0.8, abs=0.05) and scale.intercept == pytest.approx(5.0, abs=0.05)
    s2, t2 = _stream(rng, 4000)
    point, upper = scale.apply(s2)
    assert (upper >= point).all() and (point >= 1).all()
    assert abs(np.mean(t2 > upper) - 0.1) < 0.02
    assert (np.diff(point[np.argsort(s2)]) >= 0).all()  # the point keeps the score's order


def test_few_records_or_a_reversed_slope_keep_the_prior_slope():
    rng = np.random.default_rng(1)
    s, t = _stream(rng, MIN_SLOPE_RECORDS - 1)
    assert Scale.fit(s, t, 0.9, PRIOR).slope == PRIOR.slope
    s, t = _stream(rng, 500, slope=-0.5)
    assert Scale.fit(s, t, 0.9, PRIOR).slope == PRIOR.slope  # the ranking head's order is kept
    assert Scale.fit(s, t, 0.9).slope > 0


def test_online_calibration_reaches_the_quantile_per_served_model():
    rng = np.random.default_rng(2)
    cal = OnlineCalibrator(PRIOR, OnlineConfig(refit_every=10))
    a, ta = _stream(rng, 500, intercept=5.0)
    b, tb = _stream(rng, 500, intercept=3.5)
    before = np.mean(ta > PRIOR.apply(a)[1])
    assert before > 0.5  # the prior is far too low for model "a"
    for i in range(0, 500, 25):  # interleaved arrivals
        cal.observe("a", a[i:i + 25], ta[i:i + 25])
        cal.observe("b", b[i:i + 25], tb[i:i + 25])
    for name, intercept in (("a", 5.0), ("b", 3.5)):
        s, t = _stream(rng, 3000, intercept=intercept)
        assert abs(np.mean(t > cal.scale_for(name).apply(s)[1]) - 0.1) < 0.03, name
    assert cal.scale_for("unknown") is PRIOR
    status = {x.served_model: x for x in cal.status()}
    assert status["a"].completions == 500 and status["a"].window == 500


def test_a_regime_change_is_detected_and_the_old_records_are_dropped():
    rng = np.random.default_rng(3)
    config = OnlineConfig(refit_every=10, drift_window=200, drift_z=4.0)
    cal = OnlineCalibrator(PRIOR, config)
    s, t = _stream(rng, 800, intercept=5.0)
    cal.observe("m", s, t)
    settled = cal.drifts()
    s, t = _stream(rng, 400, intercept=6.5)  # the served model starts answering 4.5x longer
    cal.observe("m", s, t)
    assert cal.drifts() > settled
    (status,) = cal.status()
    assert status.window < 800  # the first regime's records are gone
    s, t = _stream(rng, 3000, intercept=6.5)
    assert abs(np.mean(t > cal.scale_for("m").apply(s)[1]) - 0.1) < 0.03


def test_a_stable_stream_raises_no_drift():
    rng = np.random.default_rng(4)
    cal = OnlineCalibrator(Scale.fit(*_stream(rng, 2000), 0.9), OnlineConfig())
    cal.observe("m", *_stream(rng, 2000))
    assert cal.drifts() == 0
