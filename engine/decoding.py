"""CTC decoding and edit-distance metrics, for models trained with a CTC loss.

=====================  =========================================================================
``greedy_decode``      best path: per-frame argmax, repeats collapsed, blanks dropped
``beam_decode``        CTC prefix beam search without a language model (Hannun et al. 2014)
``edit_distance``      Levenshtein distance of two label sequences
``label_error_rate``   sum of edit distances / sum of reference lengths
``sequence_accuracy``  fraction of hypotheses equal to their reference
=====================  =========================================================================

Both decoders take ``log_probs`` time-major, (T, B, C) float32/float64 (T frames, B sequences,
C classes, blank included), NumPy or CuPy (a CuPy array is copied to the host first), and an
optional ``lengths`` (B,) of valid frames per sequence in [0, T]; frames at or past a
sequence's length are never read.  A 2-D (T, C) array is one sequence (B = 1): the result is
then still a batch, a list holding one labelling.  A labelling is a list of Python ints in
[0, C) without the blank.

Values inside the lengths must be finite or -inf (log 0), with at least one finite value per
frame; NaN and +inf are refused.
"""
from collections.abc import Mapping

import numpy as np
from numba import njit

from engine.checks import check_int
from engine.kernels import KERNEL


def greedy_decode(log_probs, lengths=None, blank=0):
    """Best-path decoding: the most probable class of every frame, repeats collapsed, blanks
    dropped.

    Args:
        log_probs: (T, B, C) or (T, C) float32/float64 log-probabilities or raw scores (the
            argmax is the same).
        lengths: optional (B,) integers in [0, T], valid frames per sequence; None: all T.
        blank: the blank's class index, in [0, C).

    Returns:
        list of B labellings (lists of ints); B = 1 for a 2-D log_probs.
    """
    x, lengths = _check_inputs(log_probs, lengths)
    blank = check_int("blank", blank, 0, x.shape[2] - 1)
    # (B, T) so that a boolean mask keeps each sequence's labels together, in time order.
    path = np.argmax(x, axis=2).T
    previous = np.full_like(path, -1)
    previous[:, 1:] = path[:, :-1]
    keep = (path != blank) & (path != previous) & (np.arange(path.shape[1]) < lengths[:, None])
    ends = np.cumsum(keep.sum(axis=1))
    return [seq.tolist() for seq in np.split(path[keep], ends[:-1])]


def beam_decode(log_probs, lengths=None, beam_width=8, blank=0, return_scores=False):
    """CTC prefix beam search (Hannun et al. 2014, no language model), in log space.

    Every prefix in the beam carries log P(prefix, last frame blank) and log P(prefix, last
    frame non-blank); a label equal to the prefix's last one extends it only from the
    blank-ending part (otherwise the two would collapse into one).  After each frame the
    ``beam_width`` prefixes of largest total probability are kept; the best one at the end is
    returned.  With a beam wide enough to keep every prefix this is the exact most probable
    labelling and its exact probability.

    Args:
        log_probs: (T, B, C) or (T, C) float32/float64 log-probabilities over C classes.  Each
            frame goes through log_softmax first (in float64), so raw scores are accepted too;
            on log-probabilities that changes nothing but rounding.
        lengths: optional (B,) integers in [0, T], valid frames per sequence; None: all T.
        beam_width: prefixes kept after each frame, >= 1.
        blank: the blank's class index, in [0, C).
        return_scores: also return the scores.

    Returns:
        list of B labellings (lists of ints), B = 1 for a 2-D log_probs; with
        ``return_scores``, the pair (labellings, scores), scores a (B,) float64 array: the
        natural-log probability of each returned labelling as the beam computed it (exact for
        a wide beam, a lower bound otherwise).
    """
    x, lengths = _check_inputs(log_probs, lengths)
    beam_width = check_int("beam_width", beam_width, 1)
    blank = check_int("blank", blank, 0, x.shape[2] - 1)
    # (B, T, C) contiguous float64: each sequence's frames are one contiguous block.
    x = np.ascontiguousarray(x.transpose(1, 0, 2), dtype=np.float64)
    labels, scores = [], np.empty(x.shape[0])
    for b in range(x.shape[0]):
        seq, scores[b] = ctc_beam_search_kernel(x[b], lengths[b], beam_width, blank)
        labels.append(seq.tolist())
    return (labels, scores) if return_scores else labels


def edit_distance(ref, hyp):
    """Levenshtein distance between two 1-D integer sequences (list, tuple or array):
    substitutions, insertions and deletions cost 1 each.  Returns an int."""
    return int(_levenshtein(_as_labels("ref", ref), _as_labels("hyp", hyp)))


def label_error_rate(refs, hyps):
    """Sum of ``edit_distance(ref, hyp)`` over the pairs divided by the sum of the reference
    lengths (a float, may exceed 1).  refs, hyps: equally long lists of integer sequences;
    ValueError if their lengths differ or every reference is empty."""
    refs, hyps = _check_pairs(refs, hyps)
    total = sum(r.size for r in refs)
    if total == 0:
        raise ValueError("refs must hold at least one label, got only empty references")
    return sum(int(_levenshtein(r, h)) for r, h in zip(refs, hyps)) / total


def sequence_accuracy(refs, hyps):
    """Fraction of pairs whose hypothesis equals its reference exactly (a float in [0, 1]).
    refs, hyps: equally long, non-empty lists of integer sequences."""
    refs, hyps = _check_pairs(refs, hyps)
    if not refs:
        raise ValueError("refs must not be empty")
    return sum(np.array_equal(r, h) for r, h in zip(refs, hyps)) / len(refs)


# ---------------------------------------------------------------------------- the beam kernel

@njit(**KERNEL)
def ctc_beam_search_kernel(x, length, beam_width, blank):
    """Prefix beam search over one sequence.

    x: (T, C) float64 C-contiguous scores, frames [0, length) read, each log-softmaxed here.
    Returns (labels, score): (L,) int64 best labelling, and its log probability.

    Prefixes live in a trie (``_new_trie``) so that one prefix is one node: two beam entries
    that reach the same labelling (a prefix kept as it is and its parent extended by its last
    label) must merge their probabilities, and a node id compares in O(1).

    The kernels use loops and np.empty only, for the cold compile (cache=True makes it a
    one-off): np.argsort cost 2 s, each np.full or array method 0.3-0.8 s per signature
    (measured on a 2-core EPYC: first call 11.6 s -> 4-6 s).
    """
    C = x.shape[1]
    parent, label, child, pos = _new_trie(min(1 + beam_width * length, 1024), C)
    # np.int64 and not a literal 1: Numba would compile _prune once more for Literal[int](1).
    n_nodes = np.int64(1)
    beam = _filled_int(n_nodes, -1)
    beam[0] = 0  # the root, the empty prefix: P(blank-ending) = 1
    pb, pnb = _filled_float(n_nodes, 0.0), _filled_float(n_nodes, -np.inf)
    y = np.empty(C)
    for t in range(length):
        _log_softmax_row(x[t], y)
        cand = _extend(beam, pb, pnb, y, blank, label, child, pos)
        need = n_nodes + min(cand[0], beam_width)  # _prune adds at most this many nodes
        if need > parent.size:
            parent, label, child, pos = _grow_trie(parent, label, child, pos, need)
        beam, pb, pnb, n_nodes = _prune(cand, beam_width, parent, label, child, n_nodes)
    best = _logaddexp(pb[0], pnb[0])
    return _backtrack(beam[0], parent, label), best


@njit(**KERNEL)
def _extend(beam, pb, pnb, y, blank, label, child, pos):
    """One frame's candidates from the beam (nodes ``beam``, log probabilities ``pb``, ``pnb``)
    and the frame's log-probabilities ``y`` (C,).

    Returns (k, node, parent, lab, cb, cnb): k candidates; node id (-1 for a prefix with no
    node yet: then it is node ``parent`` extended by ``lab``), and its log P(blank-ending),
    log P(non-blank-ending).  Candidates 0..len(beam)-1 are the beam's own prefixes.
    ``pos`` (node -> beam index, -1 elsewhere) is used as scratch and left all -1.
    """
    nb, C = beam.size, y.size
    node, par, lab = _filled_int(nb * C, -1), _filled_int(nb * C, -1), _filled_int(nb * C, -1)
    cb, cnb = _filled_float(nb * C, -np.inf), _filled_float(nb * C, -np.inf)
    for j in range(nb):
        node[j], pos[beam[j]] = beam[j], j
    k = nb
    for j in range(nb):
        n, last = beam[j], label[beam[j]]
        total = _logaddexp(pb[j], pnb[j])
        cb[j] = _logaddexp(cb[j], total + y[blank])
        if last >= 0:  # the last label repeated collapses into the same prefix
            cnb[j] = _logaddexp(cnb[j], pnb[j] + y[last])
        for c in range(C):
            if c == blank:
                continue
            # A repeat of the last label is a new label only after a blank.
            p = pb[j] + y[c] if c == last else total + y[c]
            m = child[n * C + c]
            if m >= 0 and pos[m] >= 0:  # that prefix is in the beam: merge
                i = pos[m]
            else:
                i, k = k, k + 1
                node[i], par[i], lab[i] = m, n, c
            cnb[i] = _logaddexp(cnb[i], p)
    for j in range(nb):
        pos[beam[j]] = -1
    return k, node, par, lab, cb, cnb


@njit(**KERNEL)
def _prune(cand, beam_width, parent, label, child, n_nodes):
    """The ``beam_width`` most probable candidates of ``_extend`` (fewer if some have
    probability 0), most probable first, each given a trie node.  The trie must have room for
    min(k, beam_width) more nodes.  Returns (beam, pb, pnb, n_nodes)."""
    k, node, par, lab, cb, cnb = cand
    C = child.size // parent.size
    total = np.empty(k)
    for i in range(k):
        total[i] = _logaddexp(cb[i], cnb[i])
    order, keep = _top_k(total, beam_width)
    beam, pb, pnb = np.empty(keep, np.int64), np.empty(keep), np.empty(keep)
    for r in range(keep):
        i = order[r]
        if node[i] < 0:
            node[i] = n_nodes
            parent[n_nodes], label[n_nodes] = par[i], lab[i]
            child[par[i] * C + lab[i]] = n_nodes
            n_nodes += 1
        beam[r], pb[r], pnb[r] = node[i], cb[i], cnb[i]
    return beam, pb, pnb, n_nodes


@njit(**KERNEL)
def _top_k(values, k):
    """Indices of the (at most) k largest entries of ``values`` (k,) that exceed -inf, largest
    first, ties in index order; returns (indices, count).

    Insertion into a sorted buffer: O(len(values) * k) at worst, and far less when few
    candidates beat the k-th best, as in a beam (C ~ 30 candidates per prefix, most of them
    improbable).  np.argsort would cost 2 s of cold compilation (mergesort, measured) for no
    gain at beam widths of 8-16.
    """
    out = np.empty(min(k, values.size), np.int64)
    n = 0
    for i in range(values.size):
        v = values[i]
        if v == -np.inf or (n == k and v <= values[out[n - 1]]):
            continue
        j = min(n, k - 1)  # the slot to fill; a full buffer drops its last entry
        while j > 0 and values[out[j - 1]] < v:
            out[j] = out[j - 1]
            j -= 1
        out[j] = i
        n = min(n + 1, k)
    return out, n


@njit(**KERNEL)
def _new_trie(capacity, C):
    """Empty trie of ``capacity`` nodes holding the root (node 0, the empty prefix):
    parent (N,), label (N,) (-1 for the root), child (N * C,) node of extension c of node n
    at n * C + c or -1, and pos (N,) all -1 (scratch of ``_extend``)."""
    return (_filled_int(capacity, -1), _filled_int(capacity, -1),
            _filled_int(capacity * C, -1), _filled_int(capacity, -1))


@njit(**KERNEL)
def _grow_trie(parent, label, child, pos, need):
    """The trie copied into arrays of at least ``need`` nodes (doubling, so growth is
    amortised: a sequence's node count is unknown until it ends, at most 1 + T * beam)."""
    capacity = parent.size
    while capacity < need:
        capacity *= 2
    p2, l2, c2, s2 = _new_trie(capacity, child.size // parent.size)
    for n in range(parent.size):
        p2[n], l2[n], s2[n] = parent[n], label[n], pos[n]
    for i in range(child.size):
        c2[i] = child[i]
    return p2, l2, c2, s2


@njit(**KERNEL)
def _backtrack(node, parent, label):
    """The labelling of trie node ``node``, root to leaf, as an (L,) int64 array."""
    L, n = 0, node
    while n > 0:
        L, n = L + 1, parent[n]
    out = np.empty(L, np.int64)
    for i in range(L - 1, -1, -1):
        out[i], node = label[node], parent[node]
    return out


@njit(**KERNEL)
def _log_softmax_row(row, out):
    """out[c] = row[c] - log(sum(exp(row))), shifted by the row's maximum (finite: checked on
    entry) so that no exp overflows."""
    m = -np.inf
    for c in range(row.size):
        m = max(m, row[c])
    s = 0.0
    for c in range(row.size):
        s += np.exp(row[c] - m)
    shift = m + np.log(s)
    for c in range(row.size):
        out[c] = row[c] - shift


@njit(**KERNEL)
def _filled_int(n, value):
    a = np.empty(n, np.int64)
    for i in range(n):
        a[i] = value
    return a


@njit(**KERNEL)
def _filled_float(n, value):
    a = np.empty(n, np.float64)
    for i in range(n):
        a[i] = value
    return a


@njit(**KERNEL)
def _logaddexp(a, b):
    """log(exp(a) + exp(b)) without overflow; -inf (probability 0) is handled apart because
    -inf - -inf is NaN."""
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    if a > b:
        return a + np.log1p(np.exp(b - a))
    return b + np.log1p(np.exp(a - b))


@njit(**KERNEL)
def _levenshtein(a, b):
    """Edit distance of two int64 arrays, one row of the dynamic programme at a time."""
    row = np.empty(b.size + 1, np.int64)
    for j in range(b.size + 1):
        row[j] = j
    for i in range(a.size):
        diag, row[0] = row[0], i + 1
        for j in range(b.size):
            sub = diag + (a[i] != b[j])
            diag = row[j + 1]
            row[j + 1] = min(sub, row[j] + 1, diag + 1)
    return row[b.size]


# ---------------------------------------------------------------------------- argument checks

def _check_inputs(log_probs, lengths):
    """log_probs as a (T, B, C) float NumPy array (a (T, C) one as B = 1) and lengths as a (B,)
    int64 array; raises TypeError/ValueError naming the argument."""
    x = _to_host(log_probs)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"log_probs must be a NumPy or CuPy array of shape (T, B, C), got "
                        f"{type(log_probs).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"log_probs must have dtype float32 or float64, got {x.dtype}")
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3 or x.shape[2] == 0:
        raise ValueError(f"log_probs must have shape (T, B, C) or (T, C) with C >= 1, got "
                         f"{x.shape}")
    lengths = _check_lengths(lengths, x.shape[0], x.shape[1])
    _check_values(x, lengths)
    return x, lengths


def _check_lengths(lengths, T, B):
    if lengths is None:
        return np.full(B, T, np.int64)
    a = np.asarray(_to_host(lengths))
    if a.shape != (B,):
        raise ValueError(f"lengths must have shape (B,) = ({B},), got {a.shape}")
    if B and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"lengths must hold integers, got dtype {a.dtype}")
    if B and (a.min() < 0 or a.max() > T):
        raise ValueError(f"lengths must lie in [0, T={T}], got values in [{a.min()}, {a.max()}]")
    return a.astype(np.int64)


def _check_values(x, lengths):
    """Inside the lengths: no NaN, no +inf, and a finite value in every frame (the log-softmax
    of a frame needs a finite maximum).  Padding frames may hold anything."""
    valid = x[np.arange(x.shape[0])[:, None] < lengths[None, :]]  # (frames, C)
    if np.isnan(valid).any() or np.isposinf(valid).any():
        raise ValueError("log_probs must not hold NaN or +inf within the lengths")
    if not np.isfinite(valid).any(axis=1).all():
        raise ValueError("log_probs must have a finite value in every frame within the lengths "
                         "(a frame of all -inf has probability 0 for every class)")


def _to_host(a):
    """A CuPy array (anything with ``.get()`` but a NumPy array) copied to a NumPy array."""
    if not isinstance(a, (np.ndarray, Mapping)) and callable(getattr(a, "get", None)):
        return a.get()
    return a


def _as_labels(name, seq):
    """A 1-D integer sequence as an int64 array; TypeError for anything else."""
    a = np.asarray(_to_host(seq))
    if a.size == 0:
        return np.zeros(0, np.int64)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be a 1-D sequence of ints, got {a.ndim}-D dtype {a.dtype}")
    return a.astype(np.int64)


def _check_pairs(refs, hyps):
    for name, v in (("refs", refs), ("hyps", hyps)):
        if not hasattr(v, "__len__") or isinstance(v, (str, bytes)):
            raise TypeError(f"{name} must be a list of label sequences, got {type(v).__name__}")
    if len(refs) != len(hyps):
        raise ValueError(f"refs and hyps must have the same length, got {len(refs)} and "
                         f"{len(hyps)}")
    return ([_as_labels(f"refs[{i}]", r) for i, r in enumerate(refs)],
            [_as_labels(f"hyps[{i}]", h) for i, h in enumerate(hyps)])
