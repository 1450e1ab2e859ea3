"""engine.decoding against brute force: every alignment of tiny cases enumerated (the exact
most probable labelling and its probability), the CTC forward algorithm for longer ones, a
per-frame loop for the greedy decoder, and a memoised recursion for the edit distance."""
import functools
import itertools

import numpy as np
import pytest

from engine.decoding import (_top_k, beam_decode, edit_distance, greedy_decode,
                             label_error_rate, sequence_accuracy)

# A beam that keeps every prefix against the float64 brute force: only summation order differs.
EXACT_TOL = 1e-10
# Wide enough to keep every prefix of the brute-force cases (at most 2**6 + ... + 1 < 200).
WIDE = 10_000
# Padding frames are filled with this: read by mistake, it would dominate every result.
PAD = 1e3


# ---------------------------------------------------------------------------- references

def log_softmax(z):
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def logsumexp(v):
    v = np.asarray(v, dtype=np.float64)
    m = v.max()
    return m if m == -np.inf else m + np.log(np.exp(v - m).sum())


def collapse(path, blank):
    """The labelling of one alignment: repeats merged, then blanks dropped."""
    return tuple(c for i, c in enumerate(path) if c != blank and (i == 0 or path[i - 1] != c))


def labelling_log_probs_reference(lp, blank):
    """{labelling: log P(labelling)} summed over all C**T alignments of lp (T, C) log-probs."""
    T, C = lp.shape
    paths = np.array(list(itertools.product(range(C), repeat=T)), np.int64).reshape(C ** T, T)
    scores = lp[np.arange(T), paths].sum(axis=1)
    groups = {}
    for path, s in zip(paths.tolist(), scores.tolist()):
        groups.setdefault(collapse(path, blank), []).append(s)
    return {k: logsumexp(v) for k, v in groups.items()}


def ctc_log_prob_reference(lp, labels, blank):
    """log P(labels | lp) by the CTC forward algorithm over lp (T, C) log-probs."""
    ext = [blank]
    for c in labels:
        ext += [c, blank]
    S = len(ext)
    alpha = np.full(S, -np.inf)
    alpha[0] = 0.0
    for t in range(lp.shape[0]):
        prev = alpha.copy()
        for s in range(S):
            terms = [prev[s]] + ([prev[s - 1]] if s >= 1 else [])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                terms.append(prev[s - 2])
            alpha[s] = logsumexp(terms) + lp[t, ext[s]] if max(terms) > -np.inf else -np.inf
    return logsumexp(alpha[-2:]) if S > 1 else alpha[0]


def prefix_beam_search_reference(lp, width, blank):
    """Hannun et al.'s prefix beam search over lp (T, C) log-probs, prefixes in a dict:
    returns (labelling, log score) of the best prefix."""
    beam = {(): (0.0, -np.inf)}
    for y in lp:
        nxt = {}

        def add(prefix, pb, pnb):
            old = nxt.get(prefix, (-np.inf, -np.inf))
            nxt[prefix] = (np.logaddexp(old[0], pb), np.logaddexp(old[1], pnb))

        for prefix, (pb, pnb) in beam.items():
            total = np.logaddexp(pb, pnb)
            add(prefix, total + y[blank], pnb + y[prefix[-1]] if prefix else -np.inf)
            for c in range(len(y)):
                if c != blank:
                    repeat = bool(prefix) and prefix[-1] == c
                    add(prefix + (c,), -np.inf, (pb if repeat else total) + y[c])
        ranked = sorted(nxt.items(), key=lambda kv: -np.logaddexp(*kv[1]))
        beam = dict(kv for kv in ranked[:width] if np.logaddexp(*kv[1]) > -np.inf)
    best = next(iter(beam))
    return best, float(np.logaddexp(*beam[best]))


def greedy_reference(x, lengths, blank):
    """Best path by a loop over frames."""
    out = []
    for b in range(x.shape[1]):
        labels, prev = [], None
        for t in range(lengths[b]):
            c = int(np.argmax(x[t, b]))
            if c != blank and c != prev:
                labels.append(c)
            prev = c
        out.append(labels)
    return out


@functools.lru_cache(maxsize=None)
def edit_distance_reference(a, b):
    """Levenshtein distance of two tuples by its recursive definition."""
    if not a or not b:
        return len(a) + len(b)
    return min(edit_distance_reference(a[1:], b) + 1, edit_distance_reference(a, b[1:]) + 1,
               edit_distance_reference(a[1:], b[1:]) + (a[0] != b[0]))


def random_batch(rng, T, B, C, scale=2.0):
    """(T, B, C) float64 log-probs, random lengths in [0, T] (one of them T), padding = PAD."""
    lp = log_softmax(rng.normal(size=(T, B, C)) * scale)
    lengths = rng.integers(0, T + 1, size=B)
    lengths[rng.integers(B)] = T
    for b in range(B):
        lp[lengths[b]:, b] = PAD
    return lp, lengths


# ---------------------------------------------------------------------------- beam_decode

def test_wide_beam_is_the_exact_most_probable_labelling(rng):
    for _ in range(60):
        T, C = int(rng.integers(1, 7)), int(rng.integers(1, 4))
        blank = int(rng.integers(C))
        lp, lengths = random_batch(rng, T, 3, C, scale=rng.uniform(0.3, 3.0))
        labels, scores = beam_decode(lp, lengths, beam_width=WIDE, blank=blank,
                                     return_scores=True)
        for b in range(3):
            probs = labelling_log_probs_reference(lp[:lengths[b], b], blank)
            best = max(probs, key=probs.get)
            assert tuple(labels[b]) == best, (T, C, blank, lengths[b])
            assert abs(scores[b] - probs[best]) <= EXACT_TOL


def test_beam_score_never_exceeds_the_labellings_probability(rng):
    """A narrow beam drops alignments, so its score is a lower bound of the exact one; a wide
    beam's labelling is at least as probable as the greedy one."""
    for _ in range(40):
        T, C = int(rng.integers(2, 7)), int(rng.integers(2, 4))
        blank = int(rng.integers(C))
        lp, lengths = random_batch(rng, T, 2, C, scale=rng.uniform(0.3, 3.0))
        greedy = greedy_decode(lp, lengths, blank=blank)
        wide = beam_decode(lp, lengths, beam_width=WIDE, blank=blank)
        for width in (1, 2, 3):
            labels, scores = beam_decode(lp, lengths, beam_width=width, blank=blank,
                                         return_scores=True)
            for b in range(2):
                probs = labelling_log_probs_reference(lp[:lengths[b], b], blank)
                assert scores[b] <= probs[tuple(labels[b])] + EXACT_TOL
                assert probs[tuple(wide[b])] >= probs[tuple(greedy[b])] - EXACT_TOL
                assert probs[tuple(wide[b])] >= probs[tuple(labels[b])] - EXACT_TOL


def test_narrow_beams_against_the_dict_reference(rng):
    """Pruning as the paper's algorithm prunes: the same labelling and score as a plain-Python
    search over a dict of prefixes, at widths that drop most prefixes."""
    for T, C, blank, width in [(12, 3, 0, 1), (25, 4, 3, 3), (40, 6, 2, 8), (30, 11, 0, 16)]:
        lp, lengths = random_batch(rng, T, 3, C, scale=rng.uniform(0.5, 3.0))
        labels, scores = beam_decode(lp, lengths, beam_width=width, blank=blank,
                                     return_scores=True)
        for b in range(3):
            want, score = prefix_beam_search_reference(lp[:lengths[b], b], width, blank)
            assert tuple(labels[b]) == want
            assert abs(scores[b] - score) <= EXACT_TOL


def test_long_sequences_against_the_forward_algorithm(rng):
    """T = 120 with a beam of 64: the trie outgrows its first allocation (1024 nodes); the
    result matches the dict reference, and each score is a lower bound of the labelling's
    exact probability (the beam drops the alignments through pruned prefixes)."""
    T, B, C = 120, 3, 5
    lp, lengths = random_batch(rng, T, B, C, scale=1.5)
    labels, scores = beam_decode(lp, lengths, beam_width=64, blank=2, return_scores=True)
    for b in range(B):
        want, score = prefix_beam_search_reference(lp[:lengths[b], b], 64, 2)
        assert tuple(labels[b]) == want and abs(scores[b] - score) <= EXACT_TOL
        assert scores[b] <= ctc_log_prob_reference(lp[:lengths[b], b], labels[b], 2) + EXACT_TOL


def test_sharp_outputs_give_the_greedy_labelling_at_every_width(rng):
    """When one class takes almost all the mass in every frame, the best path's labelling is
    the most probable one, and any beam, even of width 1, finds it."""
    T, B, C = 50, 4, 6
    x = rng.normal(size=(T, B, C))
    x[np.arange(T)[:, None], np.arange(B), rng.integers(C, size=(T, B))] += 25.0
    lengths = np.array([50, 31, 7, 0])
    greedy = greedy_decode(x, lengths, blank=1)
    for width in (1, 4, 16):
        assert beam_decode(x, lengths, beam_width=width, blank=1) == greedy


def test_raw_scores_float32_and_the_two_dimensional_form(rng):
    T, B, C = 30, 4, 7
    raw = rng.normal(size=(T, B, C)) * 3 + 5
    got, s_raw = beam_decode(raw, beam_width=8, return_scores=True)
    want, s_lp = beam_decode(log_softmax(raw), beam_width=8, return_scores=True)
    assert got == want
    np.testing.assert_allclose(s_raw, s_lp, rtol=0, atol=EXACT_TOL)
    x32 = raw.astype(np.float32)
    assert beam_decode(x32) == beam_decode(x32.astype(np.float64))
    assert beam_decode(raw[:, 2], beam_width=8) == [want[2]]
    assert greedy_decode(raw[:, 2]) == [greedy_decode(raw)[2]]


def test_empty_sequences_and_a_blank_only_alphabet(rng):
    x = log_softmax(rng.normal(size=(5, 2, 3)))
    labels, scores = beam_decode(x, np.array([0, 0]), return_scores=True)
    assert labels == [[], []] and scores.tolist() == [0.0, 0.0]
    labels, scores = beam_decode(np.zeros((4, 2, 1)) + 0.5, return_scores=True)
    assert labels == [[], []]
    np.testing.assert_allclose(scores, 0.0, atol=EXACT_TOL)  # the only labelling: P = 1
    assert greedy_decode(np.zeros((0, 2, 3))) == [[], []]


def test_log_zero_entries_are_probability_zero(rng):
    """-inf (log 0) is valid input: a class that is impossible in a frame is never emitted."""
    raw = rng.normal(size=(6, 2, 3))
    raw[:, :, 2] = -np.inf
    lp = log_softmax(raw)
    labels, scores = beam_decode(lp, beam_width=WIDE, return_scores=True)
    for b in range(2):
        probs = labelling_log_probs_reference(lp[:, b], 0)
        best = max(probs, key=probs.get)
        assert tuple(labels[b]) == best and 2 not in labels[b]
        assert abs(scores[b] - probs[best]) <= EXACT_TOL


def test_top_k_against_a_stable_argsort(rng):
    for _ in range(200):
        n, k = int(rng.integers(1, 40)), int(rng.integers(1, 12))
        v = rng.integers(-3, 4, size=n).astype(np.float64)  # many ties
        v[rng.random(n) < 0.2] = -np.inf
        idx, count = _top_k(v, k)
        want = [i for i in np.argsort(-v, kind="stable") if v[i] > -np.inf][:k]
        assert idx[:count].tolist() == want


# ---------------------------------------------------------------------------- greedy_decode

def test_greedy_matches_a_per_frame_loop_and_ignores_padding(rng):
    for blank in (0, 3):
        x = rng.normal(size=(40, 6, 5))
        lengths = np.array([40, 0, 1, 17, 39, 25])
        for b in range(6):  # one huge class past the length: read by mistake, it would show
            x[lengths[b]:, b, rng.integers(5)] = PAD
        got = greedy_decode(x, lengths, blank=blank)
        assert got == greedy_reference(x, lengths, blank)
        assert got == [greedy_decode(x[:lengths[b], b], blank=blank)[0] for b in range(6)]
        assert all(type(c) is int for seq in got for c in seq)


def test_greedy_collapses_repeats_only_between_blanks():
    classes = [1, 1, 0, 1, 2, 2, 0, 0, 2, 1]
    x = np.eye(3)[classes][:, None, :]  # (T, 1, 3) one-hot frames
    assert greedy_decode(x) == [[1, 1, 2, 2, 1]]
    assert greedy_decode(x, blank=2) == [[1, 0, 1, 0, 1]]


def test_arrays_with_get_are_brought_to_the_host(rng):
    class DeviceArray:  # stands in for a CuPy array
        def __init__(self, a):
            self.a = a

        def get(self):
            return self.a

    x = rng.normal(size=(8, 2, 4))
    assert greedy_decode(DeviceArray(x)) == greedy_decode(x)
    assert beam_decode(DeviceArray(x), DeviceArray(np.array([8, 5]))) == \
        beam_decode(x, [8, 5])


# ---------------------------------------------------------------------------- argument checks

X = np.zeros((4, 2, 3)) - 1.0
NAN_X = X.copy()
NAN_X[1, 0, 2] = np.nan
NEG_INF_X = X.copy()
NEG_INF_X[1, 1] = -np.inf

BAD_ARGUMENTS = [
    (dict(log_probs=X.tolist()), TypeError, "log_probs must be a NumPy or CuPy array"),
    (dict(log_probs=X.astype(np.int64)), TypeError, "dtype float32 or float64"),
    (dict(log_probs=X[0, 0]), ValueError, r"shape \(T, B, C\)"),
    (dict(log_probs=X[None]), ValueError, r"shape \(T, B, C\)"),
    (dict(log_probs=X[:, :, :0]), ValueError, "C >= 1"),
    (dict(blank=3), ValueError, "blank must be <= 2"),
    (dict(blank=-1), ValueError, "blank must be >= 0"),
    (dict(blank=1.0), TypeError, "blank must be an int"),
    (dict(lengths=[4]), ValueError, r"lengths must have shape \(B,\) = \(2,\)"),
    (dict(lengths=4), ValueError, r"lengths must have shape \(B,\)"),
    (dict(lengths=[4.0, 1.0]), TypeError, "lengths must hold integers"),
    (dict(lengths=[5, 1]), ValueError, r"lengths must lie in \[0, T=4\]"),
    (dict(lengths=[-1, 1]), ValueError, r"lengths must lie in \[0, T=4\]"),
    (dict(log_probs=NAN_X), ValueError, "NaN or \\+inf"),
    (dict(log_probs=-NEG_INF_X), ValueError, "NaN or \\+inf"),
    (dict(log_probs=NEG_INF_X), ValueError, "finite value in every frame"),
]


@pytest.mark.parametrize("decode", [greedy_decode, beam_decode])
@pytest.mark.parametrize("kwargs, error, match", BAD_ARGUMENTS)
def test_bad_arguments_are_refused_by_name(decode, kwargs, error, match):
    kwargs = dict(dict(log_probs=X), **kwargs)
    with pytest.raises(error, match=match):
        decode(**kwargs)


def test_beam_width_is_checked_and_padding_may_hold_anything():
    with pytest.raises(ValueError, match="beam_width must be >= 1"):
        beam_decode(X, beam_width=0)
    with pytest.raises(TypeError, match="beam_width must be an int"):
        beam_decode(X, beam_width=2.5)
    for decode in (greedy_decode, beam_decode):  # NaN and -inf rows only past the lengths
        assert decode(NAN_X, [1, 4]) == decode(X, [1, 4])
        assert decode(NEG_INF_X, [4, 1]) == decode(X, [4, 1])


# ---------------------------------------------------------------------------- metrics

def test_edit_distance_against_the_recursive_definition(rng):
    for _ in range(300):
        a = tuple(rng.integers(0, 4, size=rng.integers(0, 9)).tolist())
        b = tuple(rng.integers(0, 4, size=rng.integers(0, 9)).tolist())
        assert edit_distance(a, b) == edit_distance_reference(a, b)
        assert edit_distance(np.array(b, np.int32), list(a)) == edit_distance_reference(a, b)


def test_edit_distance_known_cases():
    def codes(s):
        return [ord(c) for c in s]

    assert edit_distance(codes("kitten"), codes("sitting")) == 3
    assert edit_distance(codes("flaw"), codes("lawn")) == 2
    assert edit_distance([], [1, 2]) == 2 and edit_distance([1, 2, 3], []) == 3
    assert edit_distance([], []) == 0 and edit_distance([5, 6], (5, 6)) == 0
    assert type(edit_distance([1], [2])) is int


def test_label_error_rate_and_sequence_accuracy_by_hand():
    refs, hyps = [[1, 2, 3], [4, 5], []], [[1, 3], [4, 5, 6], []]
    assert label_error_rate(refs, hyps) == pytest.approx(2 / 5)  # one deletion, one insertion
    assert sequence_accuracy(refs, hyps) == pytest.approx(1 / 3)
    assert label_error_rate([[], [1, 2]], [[3], [1, 2]]) == pytest.approx(1 / 2)
    assert label_error_rate([[1, 2]], [[3, 4, 5, 6]]) == pytest.approx(2.0)  # may exceed 1
    assert sequence_accuracy([[1], [2, 3], []], [[1], [2, 3], []]) == 1.0
    assert sequence_accuracy([np.array([7, 8])], [[7, 8]]) == 1.0


def test_metric_arguments_are_checked():
    with pytest.raises(ValueError, match="refs and hyps must have the same length, got 2 and 1"):
        label_error_rate([[1], [2]], [[1]])
    with pytest.raises(ValueError, match="refs and hyps must have the same length"):
        sequence_accuracy([[1]], [])
    with pytest.raises(ValueError, match="at least one label"):
        label_error_rate([[], []], [[1], []])
    with pytest.raises(ValueError, match="at least one label"):
        label_error_rate([], [])
    with pytest.raises(ValueError, match="refs must not be empty"):
        sequence_accuracy([], [])
    with pytest.raises(TypeError, match=r"hyps\[1\] must be a 1-D sequence of ints"):
        label_error_rate([[1], [2]], [[1], [2.5]])
    with pytest.raises(TypeError, match="ref must be a 1-D sequence of ints"):
        edit_distance([[1, 2]], [1])
    with pytest.raises(TypeError, match="refs must be a list of label sequences"):
        sequence_accuracy(3, [[1]])
