"""engine.apps.windows: splits, scaler, windows (against a slow obvious construction), vocabulary,
returns and volatility."""
import numpy as np
import pytest

from engine.apps import windows as wn

# ---------------------------------------------------------------------------------------------
# Reference constructions: slow and obvious
# ---------------------------------------------------------------------------------------------

def make_windows_reference(series, window, horizon):
    X, Y = [], []
    for i in range(len(series) - window - horizon + 1):
        X.append([[series[i + k]] for k in range(window)])
        Y.append([series[i + window + h] for h in range(horizon)])
    return np.array(X, dtype=np.float64), np.array(Y, dtype=np.float64)


def realised_volatility_reference(returns, days):
    return np.array([np.sqrt(sum(r * r for r in returns[i:i + days]))
                     for i in range(len(returns) - days + 1)])


# ---------------------------------------------------------------------------------------------
# Split
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [7, 10, 100, 3120, 3049])
def test_chronological_split_covers_range_in_order(n):
    train, val, test = wn.chronological_split(n)
    assert (train.start, train.stop, val.start, val.stop, test.start, test.stop) == \
        (0, train.stop, train.stop, val.stop, val.stop, n)
    assert 0 < train.stop < val.stop < n


def test_chronological_split_sizes():
    assert wn.chronological_split(3120) == (slice(0, 2184), slice(2184, 2652), slice(2652, 3120))
    assert wn.chronological_split(10, (0.5, 0.3, 0.2)) == (slice(0, 5), slice(5, 8), slice(8, 10))


@pytest.mark.parametrize("fractions", [(0.7, 0.3), (0.7, 0.2, 0.2), (1.0, 0.0, 0.0),
                                       (0.8, -0.1, 0.3)])
def test_chronological_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        wn.chronological_split(100, fractions)


def test_chronological_split_too_small():
    with pytest.raises(ValueError, match="too small"):
        wn.chronological_split(4, (0.9, 0.05, 0.05))


@pytest.mark.parametrize("T, W, H", [(200, 12, 4), (431, 60, 12), (97, 5, 1), (300, 20, 17)])
def test_a_gap_of_h_minus_1_keeps_the_validation_targets_out_of_the_test_period(T, W, H):
    """Windows of a series of distinct values (its indices): with gap H - 1 no validation
    target is a test target, and one validation window more would make one; the training and
    test windows are those of no gap."""
    X, Y = wn.make_windows(np.arange(T), W, H)
    train, val, test = wn.chronological_split(len(X), gap=H - 1)
    plain = wn.chronological_split(len(X))
    assert (train, test, val.start) == (plain[0], plain[2], plain[1].start)
    assert Y[val].max() < Y[test].min()
    assert Y[val.start:val.stop + 1].max() >= Y[test].min()


def test_chronological_split_gap_sizes_and_errors():
    assert wn.chronological_split(100, gap=4) == (slice(0, 70), slice(70, 81), slice(85, 100))
    with pytest.raises(ValueError, match="too small.*gap of 11: sizes would be 47, 0, 10"):
        wn.chronological_split(67, gap=11)
    with pytest.raises(ValueError, match="gap must be >= 0"):
        wn.chronological_split(100, gap=-1)
    with pytest.raises(TypeError, match="gap must be an int"):
        wn.chronological_split(100, gap=1.0)


@pytest.mark.parametrize("gap", [1, 4, 11, 47])
def test_min_split_size_with_a_gap_is_where_every_larger_split_works(gap):
    m = wn.min_split_size(gap=gap)
    with pytest.raises(ValueError, match="too small"):
        wn.chronological_split(m - 1, gap=gap)
    for n in range(m, m + 500):
        assert all(s.stop > s.start for s in wn.chronological_split(n, gap=gap)), n


@pytest.mark.parametrize("fractions", [(0.7, 0.15, 0.15), (0.5, 0.25, 0.25), (0.9, 0.05, 0.05),
                                       (0.34, 0.33, 0.33)])
def test_min_split_size_is_where_every_larger_split_works(fractions):
    m = wn.min_split_size(fractions)
    with pytest.raises(ValueError):  # too small to split, or below 3 at all
        wn.chronological_split(m - 1, fractions)
    for n in range(m, m + 500):
        assert all(s.stop > s.start for s in wn.chronological_split(n, fractions)), n
    assert wn.min_split_size() == 6  # 4 is 3, 0, 1 and 5 is 4, 0, 1 by rounding



# ---------------------------------------------------------------------------------------------
# Scaler
# ---------------------------------------------------------------------------------------------

def test_scaler_fits_train_only_and_round_trips(rng):
    train = rng.normal(5.0, 3.0, size=200)
    test = rng.normal(8.0, 1.0, size=50)
    scaler = wn.StandardScaler().fit(train)
    z = scaler.transform(train)
    assert z.mean() == pytest.approx(0.0, abs=1e-12) and z.std() == pytest.approx(1.0)
    assert scaler.transform(test).mean() > 0.5  # test statistics were not used
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(test)), test,
                               rtol=1e-12, atol=1e-12)


def test_scaler_per_feature_and_constant_feature(rng):
    x = np.column_stack([rng.normal(size=30), np.full(30, 7.0)])
    scaler = wn.StandardScaler()
    z = scaler.fit_transform(x)
    np.testing.assert_allclose(z.mean(axis=0), [0.0, 0.0], atol=1e-12)
    np.testing.assert_array_equal(z[:, 1], 0.0)
    np.testing.assert_allclose(scaler.inverse_transform(z), x, rtol=1e-12)


@pytest.mark.parametrize("method", ["transform", "inverse_transform"])
def test_scaler_refuses_before_fit(method):
    with pytest.raises(RuntimeError, match="before fit"):
        getattr(wn.StandardScaler(), method)(np.ones(3))


def test_scaler_rejects_non_finite():
    with pytest.raises(ValueError, match="finite"):
        wn.StandardScaler().fit(np.array([1.0, np.nan]))


# ---------------------------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("T, window, horizon", [(10, 3, 1), (10, 3, 4), (7, 6, 1), (50, 1, 12),
                                                (72, 60, 12)])
def test_make_windows_matches_reference(rng, T, window, horizon):
    series = rng.normal(size=T)
    X, Y = wn.make_windows(series, window, horizon)
    X_ref, Y_ref = make_windows_reference(series, window, horizon)
    assert X.shape == (T - window - horizon + 1, window, 1)
    assert Y.shape == (T - window - horizon + 1, horizon)
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(Y, Y_ref)
    assert X.flags.writeable and Y.flags.writeable and X.flags.c_contiguous


def test_make_windows_too_short():
    with pytest.raises(ValueError, match=r"too short: 5 values.*at least 6"):
        wn.make_windows(np.arange(5.0), 4, 2)


def test_make_windows_rejects_2d():
    with pytest.raises(ValueError, match="1-D"):
        wn.make_windows(np.zeros((10, 2)), 3, 1)


# ---------------------------------------------------------------------------------------------
# Character vocabulary
# ---------------------------------------------------------------------------------------------

def test_char_vocab_round_trip():
    text = "The Devil's Dictionary \u2014 caf\u00e9, na\u00efve\n\U0001F600!"
    vocab = wn.CharVocab.from_text(text)
    assert len(vocab) == len(set(text))
    assert vocab.chars == "".join(sorted(set(text)))
    ids = vocab.encode(text)
    assert ids.dtype == np.int32 and ids.shape == (len(text),)
    assert ids.min() >= 0 and ids.max() < len(vocab)
    assert vocab.decode(ids) == text
    assert vocab.decode(ids.astype(np.int64).reshape(1, -1)) == text


def test_char_vocab_ids_follow_chars_order():
    vocab = wn.CharVocab("zay")  # ids are positions in chars, whatever the order
    np.testing.assert_array_equal(vocab.encode("yaz"), [2, 1, 0])
    assert wn.CharVocab(vocab.chars).decode([0, 1, 2]) == "zay"


def test_char_vocab_empty_text_encodes_to_nothing():
    vocab = wn.CharVocab("ab")
    assert vocab.encode("").shape == (0,)
    assert vocab.decode(np.array([], dtype=np.int32)) == ""


def test_char_vocab_unknown_character():
    vocab = wn.CharVocab.from_text("abc")
    with pytest.raises(ValueError, match=r"'d' at position 2.*2 unknown"):
        vocab.encode("abdd")
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        vocab.decode([0, 3])


def test_char_vocab_rejects_repeats():
    with pytest.raises(ValueError, match="repeats"):
        wn.CharVocab("aba")


# ---------------------------------------------------------------------------------------------
# Returns and volatility
# ---------------------------------------------------------------------------------------------

def test_log_returns(rng):
    prices = np.exp(np.cumsum(rng.normal(0, 0.01, size=30))) * 100
    r = wn.log_returns(prices)
    assert r.shape == (29,)
    np.testing.assert_allclose(r, [np.log(prices[i + 1] / prices[i]) for i in range(29)],
                               rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(prices[0] * np.exp(np.cumsum(r)), prices[1:], rtol=1e-12)


@pytest.mark.parametrize("prices", [[1.0], [1.0, 0.0, 2.0], [[1.0, 2.0]]])
def test_log_returns_rejects(prices):
    with pytest.raises(ValueError):
        wn.log_returns(np.array(prices))


@pytest.mark.parametrize("days", [1, 5, 20])
def test_realised_volatility_matches_reference(rng, days):
    r = rng.normal(0, 0.02, size=60)
    v = wn.realised_volatility(r, days)
    assert v.shape == (60 - days + 1,)
    np.testing.assert_allclose(v, realised_volatility_reference(r, days), rtol=1e-12)


def test_realised_volatility_too_short():
    with pytest.raises(ValueError, match="at least 5"):
        wn.realised_volatility(np.zeros(4), 5)
