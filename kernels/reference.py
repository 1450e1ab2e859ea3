"""Plain NumPy LSTM layer, forward and backward: slow, obvious, float64-capable.

This is the oracle the kernels are tested against; it is never on a fast path.
One layer, one direction, time-major:

    x      (T, B, I)   input
    h0, c0 (B, H)      initial state
    w_ih   (G, I)      input weights, gate blocks i, f, g, o (G = 4H)
    w_hh   (G, H)      recurrent weights
    b_ih, b_hh (G,)    biases
    act    "tanh" or "relu": the cell activation (g and the cell before the output gate)
    reverse  process time from T-1 down to 0 (the backward direction of a bidirectional layer)
    w_hr   (P, H)      optional projection (LSTMP): h = (o * act(c)) @ w_hr.T, then h and the
                       recurrent input are (B, P) and w_hh is (G, P)
"""
import numpy as np


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _act(x, act):
    return np.maximum(x, 0.0) if act == "relu" else np.tanh(x)


def _act_grad(y, act):
    """Derivative of the activation written in terms of its output y."""
    return (y > 0).astype(y.dtype) if act == "relu" else 1.0 - y * y


def _order(T, reverse):
    return range(T - 1, -1, -1) if reverse else range(T)


def lstm_step_fwd_reference(x_t, h_prev, c_prev, w_ih, w_hh, b_ih, b_hh, act="tanh", w_hr=None):
    """One time step. Returns h (B,H or P), c (B,H) and the activated gates (B,G)."""
    H = c_prev.shape[1]
    z = x_t @ w_ih.T + b_ih + h_prev @ w_hh.T + b_hh
    i = _sigmoid(z[:, :H])
    f = _sigmoid(z[:, H:2 * H])
    g = _act(z[:, 2 * H:3 * H], act)
    o = _sigmoid(z[:, 3 * H:])
    c = f * c_prev + i * g
    h = o * _act(c, act)
    if w_hr is not None:
        h = h @ w_hr.T
    return h, c, np.concatenate([i, f, g, o], axis=1)


def lstm_fwd_reference(x, h0, c0, w_ih, w_hh, b_ih, b_hh, act="tanh", reverse=False, w_hr=None):
    """Returns out (T,B,H or P), h_n, c_n and a cache for ``lstm_bwd_reference``."""
    T = x.shape[0]
    out = np.zeros(x.shape[:2] + h0.shape[1:], dtype=x.dtype)
    cs = np.zeros(x.shape[:2] + c0.shape[1:], dtype=x.dtype)
    gates = np.zeros(x.shape[:2] + (w_hh.shape[0],), dtype=x.dtype)
    h, c = h0, c0
    for t in _order(T, reverse):
        h, c, gates[t] = lstm_step_fwd_reference(x[t], h, c, w_ih, w_hh, b_ih, b_hh, act, w_hr)
        out[t], cs[t] = h, c
    cache = dict(x=x, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh, w_hr=w_hr, out=out, c=cs,
                 gates=gates, act=act, reverse=reverse)
    return out, h, c, cache


def lstm_step_bwd_reference(gates, c, c_prev, dh, dc, act="tanh"):
    """Backward of one step's pointwise part.

    gates (B,G) activated i,f,g,o; c, c_prev (B,H); dh: total gradient on h_t; dc: gradient on
    c_t from the next step.  Returns (dz, dc_prev): dz (B,G) the gate pre-activation gradients.
    """
    H = c.shape[1]
    i, f, g, o = (gates[:, k * H:(k + 1) * H] for k in range(4))
    a = _act(c, act)
    dc = dc + dh * o * _act_grad(a, act)
    dz = np.concatenate([dc * g * i * (1 - i),
                         dc * c_prev * f * (1 - f),
                         dc * i * _act_grad(g, act),
                         dh * a * o * (1 - o)], axis=1)
    return dz, dc * f


def lstm_bwd_reference(dout, dh_n, dc_n, cache):
    """BPTT through ``lstm_fwd_reference``.

    dout (T,B,H) gradient on every output; dh_n, dc_n (B,H) gradients on the final state.
    Returns dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, and dw_hr when there is a projection.
    """
    x, out, cs, gates = cache["x"], cache["out"], cache["c"], cache["gates"]
    w_ih, w_hh, act, reverse = cache["w_ih"], cache["w_hh"], cache["act"], cache["reverse"]
    T = x.shape[0]
    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db = np.zeros(w_hh.shape[0], dtype=x.dtype)
    w_hr = cache["w_hr"]
    dw_hr = None if w_hr is None else np.zeros_like(w_hr)
    dh, dc = dh_n, dc_n
    for t in reversed(list(_order(T, reverse))):
        prev = t + 1 if reverse else t - 1
        first = prev < 0 or prev >= T
        h_prev = cache["h0"] if first else out[prev]
        c_prev = cache["c0"] if first else cs[prev]
        dh_t = dout[t] + dh
        if w_hr is not None:
            H = cs.shape[2]
            dw_hr += dh_t.T @ (gates[t][:, 3 * H:] * _act(cs[t], act))
            dh_t = dh_t @ w_hr
        dz, dc = lstm_step_bwd_reference(gates[t], cs[t], c_prev, dh_t, dc, act)
        dx[t] = dz @ w_ih
        dw_ih += dz.T @ x[t]
        dw_hh += dz.T @ h_prev
        db += dz.sum(axis=0)
        dh = dz @ w_hh
    grads = dx, dh, dc, dw_ih, dw_hh, db, db.copy()
    return grads if w_hr is None else grads + (dw_hr,)


def lstm_fwd_packed_reference(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, act="tanh",
                              reverse=False):
    """Variable-length batch: each sequence b runs alone over its first lengths[b] steps.

    Outputs past a sequence's end are zero and (h_n, c_n) is the state after its last valid
    step: ``torch.nn.utils.rnn.pack_padded_sequence`` semantics.
    """
    out = np.zeros(x.shape[:2] + h0.shape[1:], dtype=x.dtype)
    h_n, c_n, caches = np.zeros_like(h0), np.zeros_like(c0), []
    for b, n in enumerate(lengths):
        o, h, c, cache = lstm_fwd_reference(x[:n, b:b + 1], h0[b:b + 1], c0[b:b + 1], w_ih, w_hh,
                                            b_ih, b_hh, act, reverse)
        out[:n, b], h_n[b], c_n[b] = o[:, 0], h[0], c[0]
        caches.append(cache)
    return out, h_n, c_n, dict(caches=caches, lengths=list(lengths), x=x)


def lstm_bwd_packed_reference(dout, dh_n, dc_n, cache):
    """BPTT through ``lstm_fwd_packed_reference``; gradients of padded steps are zero."""
    dx = np.zeros_like(cache["x"])
    dh0, dc0 = np.zeros_like(dh_n), np.zeros_like(dc_n)
    total = None
    for b, (n, cb) in enumerate(zip(cache["lengths"], cache["caches"])):
        dxb, dh0[b], dc0[b], *dw = lstm_bwd_reference(dout[:n, b:b + 1], dh_n[b:b + 1],
                                                      dc_n[b:b + 1], cb)
        dx[:n, b] = dxb[:, 0]
        total = dw if total is None else [a + g for a, g in zip(total, dw)]
    return (dx, dh0, dc0, *total)


def ctc_loss_reference(logits, targets, input_lengths, target_lengths, blank=0):
    """CTC negative log-likelihood of every sequence and its gradient, float64.

    logits (T, B, C) raw scores; targets a list of B label sequences (ints, no blank);
    input_lengths (B,) frames used per sequence.  target_lengths must equal the targets'
    lengths (kept in the signature to mirror the kernel).  Returns nll (B,) (+inf where no
    alignment exists) and grad (T, B, C) = d nll_b / d logits[:, b] (NaN rows for +inf, zero
    past each input length).  The textbook recursions of Graves et al. 2006 in log space,
    one frame and one position at a time.
    """
    logits = np.asarray(logits, dtype=np.float64)
    T, B, C = logits.shape
    nll = np.zeros(B)
    grad = np.zeros((T, B, C))
    for b in range(B):
        y = [int(v) for v in targets[b]]
        assert len(y) == int(target_lengths[b])
        Tb = int(input_lengths[b])
        ext = [blank]
        for label in y:
            ext += [label, blank]
        S = len(ext)
        z = logits[:Tb, b]
        logp = z - (z.max(axis=1, keepdims=True) + np.log(np.exp(
            z - z.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True)))

        def skip_ok(s):
            return s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]

        alpha = np.full((Tb, S), -np.inf)
        beta = np.full((Tb, S), -np.inf)  # emission at t excluded
        if Tb:
            alpha[0, 0] = logp[0, ext[0]]
            if S > 1:
                alpha[0, 1] = logp[0, ext[1]]
            beta[Tb - 1, S - 1] = 0.0
            if S > 1:
                beta[Tb - 1, S - 2] = 0.0
        for t in range(1, Tb):
            for s in range(S):
                terms = [alpha[t - 1, s]]
                if s >= 1:
                    terms.append(alpha[t - 1, s - 1])
                if skip_ok(s):
                    terms.append(alpha[t - 1, s - 2])
                alpha[t, s] = np.logaddexp.reduce(terms) + logp[t, ext[s]]
        for t in range(Tb - 2, -1, -1):
            for s in range(S):
                terms = [beta[t + 1, s] + logp[t + 1, ext[s]]]
                if s + 1 < S:
                    terms.append(beta[t + 1, s + 1] + logp[t + 1, ext[s + 1]])
                if s + 2 < S and skip_ok(s + 2):
                    terms.append(beta[t + 1, s + 2] + logp[t + 1, ext[s + 2]])
                beta[t, s] = np.logaddexp.reduce(terms)
        if Tb == 0:
            log_p = 0.0 if S == 1 else -np.inf
        else:
            log_p = np.logaddexp.reduce(alpha[Tb - 1, max(S - 2, 0):])
        nll[b] = -log_p
        if log_p == -np.inf:
            grad[:Tb, b] = np.nan
            continue
        occupancy = np.zeros((Tb, C))
        for s in range(S):
            occupancy[:, ext[s]] += np.exp(alpha[:, s] + beta[:, s] - log_p)
        grad[:Tb, b] = np.exp(logp) - occupancy
    return nll, grad
