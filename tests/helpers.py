"""Test helpers: a multi-layer LSTM built from ``kernels.reference`` layers, and random data."""
import numpy as np

from kernels.reference import (lstm_bwd_packed_reference, lstm_bwd_reference,
                               lstm_fwd_packed_reference, lstm_fwd_reference)


# Central differences in float64 agree with exact gradients to about this.
FD_TOL = dict(rtol=1e-6, atol=1e-8)


def numeric_grad(f, a, eps=1e-6):
    """Central differences of scalar f() with respect to every entry of ``a`` (perturbed in
    place and restored)."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        up = f()
        a[idx] = old - eps
        down = f()
        a[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


def random_weights(rng, I, H, dtype=np.float64):
    G = 4 * H
    return [rng.uniform(-0.6, 0.6, shape).astype(dtype) for shape in ((G, I), (G, H), (G,), (G,))]


def _suffix(layer, d):
    return f"_l{layer}" + ("_reverse" if d else "")


def _layer_weights(sd, layer, d):
    s = _suffix(layer, d)
    G = sd["weight_hh" + s].shape[0]
    zero = np.zeros(G)
    return (sd["weight_ih" + s], sd["weight_hh" + s], sd.get("bias_ih" + s, zero),
            sd.get("bias_hh" + s, zero))


def stack_reference(sd, x, h0, c0, num_layers, bidirectional, act, lengths=None):
    """Forward of a stacked LSTM from reference layers; returns out, h_n, c_n, caches.

    x (T,B,I) time-major float64; h0, c0 (L*D,B,H); sd a state dict of float64 arrays.
    """
    D = 2 if bidirectional else 1
    caches, hn, cn = [], np.zeros_like(h0), np.zeros_like(c0)
    layer_in = x
    for layer in range(num_layers):
        outs, layer_caches = [], []
        for d in range(D):
            k = layer * D + d
            w = _layer_weights(sd, layer, d)
            if lengths is None:
                o, hn[k], cn[k], cache = lstm_fwd_reference(layer_in, h0[k], c0[k], *w, act,
                                                            reverse=bool(d))
            else:
                o, hn[k], cn[k], cache = lstm_fwd_packed_reference(layer_in, h0[k], c0[k], *w,
                                                                   lengths, act, bool(d))
            outs.append(o)
            layer_caches.append(cache)
        caches.append(layer_caches)
        layer_in = np.concatenate(outs, axis=2)
    return layer_in, hn, cn, caches


def stack_reference_backward(caches, dout, dhn, dcn, packed=False):
    """Backward of ``stack_reference``: returns dx, dh0, dc0 and {name: grad}."""
    bwd = lstm_bwd_packed_reference if packed else lstm_bwd_reference
    D = len(caches[0])
    H = dhn.shape[-1]
    dh0, dc0, grads = np.zeros_like(dhn), np.zeros_like(dcn), {}
    g = dout
    for layer in reversed(range(len(caches))):
        d_in = 0
        for d in range(D):
            k = layer * D + d
            dx, dh0[k], dc0[k], dwi, dwh, dbi, dbh = bwd(g[:, :, d * H:(d + 1) * H], dhn[k],
                                                         dcn[k], caches[layer][d])
            s = _suffix(layer, d)
            grads.update({"weight_ih" + s: dwi, "weight_hh" + s: dwh, "bias_ih" + s: dbi,
                          "bias_hh" + s: dbh})
            d_in = d_in + dx
        g = d_in
    return g, dh0, dc0, grads
