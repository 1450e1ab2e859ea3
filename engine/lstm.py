"""``engine.LSTM``: a ``torch.nn.LSTM``-compatible layer running fused Numba kernels.

The orchestration per layer and direction is the cuDNN/haste split:

1. one GEMM projects the input of all T steps: xproj = x @ W_ih^T + (b_ih + b_hh);
2. the backend's sequence kernel runs the recurrence (per step: h_prev @ W_hh^T plus a fused
   pointwise kernel), saving the activated gates and the cells;
3. backward: the backend's BPTT kernel produces the gate gradients dz of every step, and the
   weight gradients and the input gradient come from a few large GEMMs over all T*B rows.

Internally everything is time-major (T, B, .) and C-contiguous; ``batch_first`` and unbatched
input are converted at the API boundary.
"""
import math

import numpy as np

from engine.backends import get_backend
from engine.checks import (MAX_LAYERS, MAX_SIZE, as_array, check_array, check_choice, check_dtype,
                           check_int, check_lengths, check_probability)
from engine.grad import is_grad_enabled, private, protect
from engine.kernels import ACTIVATIONS
from engine.module import ParamModule


class Workspace:
    """Buffers kept between calls, one per name, reallocated only when shape or dtype change.

    Buffers saved for the backward live here, so a forward overwrites the previous forward's
    saved state: ``backward`` always runs through the latest ``forward``.
    """

    def __init__(self, xp):
        self.xp = xp
        self._bufs = {}

    def get(self, name, shape, dtype):
        a = self._bufs.get(name)
        if a is None or a.shape != tuple(shape) or a.dtype != dtype:
            a = self._bufs[name] = self.xp.empty(shape, dtype)
        return a


class LSTM(ParamModule):
    """Multi-layer, optionally bidirectional LSTM with PyTorch's interface and parameter layout.

    Args:
        input_size (I), hidden_size (H), num_layers, bias, batch_first, dropout, bidirectional,
            proj_size: as in ``torch.nn.LSTM``, in the same order.  ``dropout`` is inverted
            dropout on the outputs of every layer but the last, in training mode only
            (``train()``/``eval()``); ``proj_size`` P > 0 projects each step's hidden state
            to P units with ``weight_hr_l{k}`` (LSTMP).
        cell_activation: "tanh" (PyTorch's LSTM) or "relu"; used for the candidate gate g and
            for the cell before the output gate.  The gates i, f, o always use the sigmoid.
        dtype: "float32" or "float64".  Inputs must already have this dtype.
        backend: "cpu", "gpu" or "auto"; None reads ``ENGINE_BACKEND`` (default "cpu").
        seed: seed of the U(-1/sqrt(H), 1/sqrt(H)) initialisation.

    Parameters are ``weight_ih_l{k}[_reverse]`` (4H, I or R*dirs), ``weight_hh_l{k}[_reverse]``
    (4H, R), ``bias_ih_l{k}[_reverse]`` and ``bias_hh_l{k}[_reverse]`` (4H,), gate order i,f,g,o,
    and with a projection ``weight_hr_l{k}[_reverse]`` (P, H); R is P with a projection, else H.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, cell_activation="tanh",
                 dtype="float32", backend=None, seed=None):
        self.input_size = check_int("input_size", input_size, 1, MAX_SIZE)
        self.hidden_size = check_int("hidden_size", hidden_size, 1, MAX_SIZE)
        self.num_layers = check_int("num_layers", num_layers, 1, MAX_LAYERS)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = check_probability("dropout", dropout)
        self.bidirectional = bool(bidirectional)
        self.proj_size = check_int("proj_size", proj_size, 0)
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size={self.hidden_size}, "
                             f"got {self.proj_size}")
        self.training = True
        self.cell_activation = check_choice("cell_activation", cell_activation, ACTIVATIONS)
        self.dtype = check_dtype(dtype)
        self.backend = get_backend(backend)
        self._act = ACTIVATIONS[cell_activation]
        self._ws = Workspace(self.backend.xp)
        rng = np.random.default_rng(seed)
        k = 1.0 / math.sqrt(self.hidden_size)
        self.params = self._make_params(lambda shape: rng.uniform(-k, k, shape))
        self._dropout_rng = np.random.default_rng(None if seed is None else [seed, 1])
        # (global batch, first row, end row) of this rank's share in a distributed fit: the
        # masks are drawn for the whole global batch and sliced, so they do not depend on the
        # number of ranks.
        self._share = None
        self.grads = {}
        self._saved = None

    def random_state(self):
        """The dropout generator's state (JSON values): checkpoints keep it, so that training
        resumed from one draws the same dropout masks as training straight through."""
        return self._dropout_rng.bit_generator.state

    def set_random_state(self, state):
        """Restore ``random_state()`` output; ValueError for anything else."""
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = state
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            raise ValueError(f"LSTM random state: not a {type(rng.bit_generator).__name__} "
                             f"state ({type(e).__name__}: {e})") from None
        self._dropout_rng = rng

    def train(self, mode=True):
        """Training mode (dropout active); returns self, like PyTorch."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Inference mode: no dropout."""
        return self.train(False)

    # ------------------------------------------------------------------ parameters
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def output_size(self):
        """R: the size of each direction's h (proj_size when projecting, else hidden_size)."""
        return self.proj_size or self.hidden_size

    @classmethod
    def shapes_of(cls, config):
        """Ordered {name: shape} of every parameter, in ``torch.nn.LSTM``'s order."""
        I = check_int("input_size", config["input_size"], 1, MAX_SIZE)
        H = check_int("hidden_size", config["hidden_size"], 1, MAX_SIZE)
        layers = check_int("num_layers", config.get("num_layers", 1), 1, MAX_LAYERS)
        P = check_int("proj_size", config.get("proj_size", 0), 0, H - 1)
        dirs = 2 if config.get("bidirectional", False) else 1
        G, R = 4 * H, P or H
        shapes = {}
        for layer in range(layers):
            in_size = I if layer == 0 else R * dirs
            for d in range(dirs):
                sfx = _suffix(layer, d)
                shapes["weight_ih" + sfx] = (G, in_size)
                shapes["weight_hh" + sfx] = (G, R)
                if config.get("bias", True):
                    shapes["bias_ih" + sfx] = (G,)
                    shapes["bias_hh" + sfx] = (G,)
                if P:
                    shapes["weight_hr" + sfx] = (P, H)
        return shapes

    def get_config(self):
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "bias": self.bias, "batch_first": self.batch_first,
                "dropout": self.dropout, "bidirectional": self.bidirectional,
                "proj_size": self.proj_size, "cell_activation": self.cell_activation,
                "dtype": self.dtype.name}

    def _layer_params(self, layer, d):
        sfx = _suffix(layer, d)
        p = self.params
        b = p["bias_ih" + sfx] + p["bias_hh" + sfx] if self.bias else None
        return p["weight_ih" + sfx], p["weight_hh" + sfx], b, p.get("weight_hr" + sfx)

    # ------------------------------------------------------------------ forward
    def forward(self, x, state=None, lengths=None):
        """Run the LSTM over a sequence.

        Args:
            x: (T, B, I), or (B, T, I) with ``batch_first``, or (T, I) unbatched; NumPy in gives
                NumPy out (CuPy in gives CuPy out on the GPU backend).
            state: optional (h0, c0), each (num_layers * dirs, B, H), or (num_layers * dirs, H)
                for unbatched input; zeros when omitted.
            lengths: optional (B,) ints in 1..T, the valid steps of each sequence of a padded
                batch (``pack_padded_sequence`` semantics): outputs past a sequence's end are
                zero, h_n/c_n hold the state after its last valid step, and the backward gives
                padded steps zero gradient.

        Returns:
            (output, (h_n, c_n)) with ``torch.nn.LSTM``'s shapes: output (T, B, dirs*H) (or
            batch-first / unbatched like x), h_n and c_n like h0.
        """
        x_user = x
        x, unbatched = self._check_input(x)
        T, B, _ = x.shape
        h0, c0 = self._check_state("state", state, B, unbatched)
        lengths = self._check_lengths(lengths, T, B, unbatched)
        keep = is_grad_enabled()
        if keep:  # what the backward reads must not change with the caller's arrays
            x = private(x, x_user)
            if state is not None:
                h0, c0 = private(h0, state[0]), private(c0, state[1])
        out, h_n, c_n = self._forward(x, h0, c0, lengths, keep=keep)
        if self._saved is not None:
            self._saved["unbatched"] = unbatched
            self._saved["out_shape"] = self._user_shape(
                T, B, self.num_directions * self.output_size, unbatched)
            if self.num_directions == 1:
                out = protect(out)  # it is the last layer's h, which the backward reads
        to_user = self.backend.to_user
        return (to_user(self._from_time_major(out, unbatched), x_user),
                (to_user(self._state_to_user(h_n, unbatched), x_user),
                 to_user(self._state_to_user(c_n, unbatched), x_user)))

    __call__ = forward

    def _forward(self, x, h0, c0, lengths, keep=True):
        """All layers; ``keep=False`` (under ``engine.no_grad()``) saves nothing for backward."""
        xp, L, D = self.backend.xp, self.num_layers, self.num_directions
        T, B, _ = x.shape
        h_n = xp.empty((L * D, B, self.output_size), self.dtype)
        c_n = xp.empty((L * D, B, self.hidden_size), self.dtype)
        batch = xp.arange(B)
        layers = []
        layer_in = x
        for layer in range(L):
            last = layer == L - 1
            mask = self._dropout_mask(layer, layer_in.shape)
            if mask is not None:
                layer_in = layer_in * mask
            dirs = []
            for d in range(D):
                idx = layer * D + d
                saved = self._layer_fwd(layer, d, layer_in, h0[idx], c0[idx], lengths,
                                        fresh_out=last and D == 1, keep=keep)
                t_end = 0 if d == 1 else lengths - 1
                h_n[idx], c_n[idx] = saved["h"][t_end, batch], saved["c"][t_end, batch]
                dirs.append(saved)
            layers.append({"input": layer_in, "dirs": dirs, "mask": mask})
            layer_in = self._join_directions([s["h"] for s in dirs], f"out{layer}", fresh=last)
        self._saved = {"h0": h0, "c0": c0, "layers": layers, "T": T, "B": B,
                       "lengths": lengths} if keep else None
        return layer_in, h_n, c_n

    def _dropout_mask(self, layer, shape):
        """Inverted-dropout mask for the input of ``layer`` (> 0) in training mode, else None."""
        if layer == 0 or not self.training or self.dropout == 0:
            return None
        if self._share is None:
            keep = self._dropout_rng.random(shape) >= self.dropout
        else:
            total, lo, hi = self._share
            keep = self._dropout_rng.random((shape[0], total, *shape[2:]))[:, lo:hi] \
                >= self.dropout
        return self.backend.asarray((keep / (1.0 - self.dropout)).astype(self.dtype))

    def skip_dropout(self, steps, total):
        """Advance the dropout generator as a training forward of ``total`` sequences of
        ``steps`` would: a rank whose share of a global batch is empty keeps in step."""
        if self.training and self.dropout > 0:
            for _ in range(1, self.num_layers):
                self._dropout_rng.random((steps, total,
                                          self.output_size * self.num_directions))

    def _layer_fwd(self, layer, d, layer_in, h0, c0, lengths, fresh_out, keep):
        """One layer, one direction: input projection GEMM, then the sequence kernel.

        Returns the buffers the backward needs: h, c, gates and, with a projection, h_raw.
        Without ``keep`` the gates buffer holds one step, overwritten by each (the kernels
        write step t to gates[min(t, len(gates) - 1)]).
        """
        xp, ws, dt = self.backend.xp, self._ws, self.dtype
        T, B, I = layer_in.shape
        H, G, R = self.hidden_size, 4 * self.hidden_size, self.output_size
        w_ih, w_hh, b, w_hr = self._layer_params(layer, d)
        # One (T, B, G) scratch serves as xproj in the forward and as dz in the backward: xproj
        # is dead once the sequence kernel has run (saves a third of a training step's memory).
        xproj = ws.get("tbg", (T, B, G), dt)
        self.backend.matmul(layer_in.reshape(T * B, I), w_ih.T, out=xproj.reshape(T * B, G),
                            bias=b)
        key = f"l{layer}d{d}"
        h = xp.empty((T, B, R), dt) if fresh_out else ws.get(key + "h", (T, B, R), dt)
        c = ws.get(key + "c", (T, B, H), dt)
        # Its own name: alternating training steps and no_grad evaluations reallocates nothing.
        gates = ws.get(key + "gates", (T, B, G), dt) if keep else \
            ws.get(key + "gates_step", (1, B, G), dt)
        scratch = {"h_prev": ws.get("h_prev", (B, R), dt), "c_prev": ws.get("c_prev", (B, H), dt),
                   "rec": ws.get("rec", (B, G), dt)}
        proj = {}
        if w_hr is not None:
            proj = {"w_hr_t": w_hr.T,
                    "h_raw": ws.get(key + "h_raw", (T, B, H), dt)}
        self.backend.seq_fwd(xproj, w_hh.T, h0, c0, lengths, self._act,
                             d == 1, h, c, gates, scratch, **proj)
        return {"h": h, "c": c, "gates": gates, "h_raw": proj.get("h_raw")}

    def _join_directions(self, hs, name, fresh):
        """Concatenate the directions' outputs along features: (T, B, dirs*H)."""
        if len(hs) == 1:
            return hs[0]
        T, B, H = hs[0].shape
        xp = self.backend.xp
        out = xp.empty((T, B, 2 * H), self.dtype) if fresh else \
            self._ws.get(name, (T, B, 2 * H), self.dtype)
        out[:, :, :H], out[:, :, H:] = hs
        return out

    # ------------------------------------------------------------------ backward
    def backward(self, grad_output, grad_state=None):
        """Backpropagation through time through the latest ``forward``.

        Args:
            grad_output: gradient of the loss w.r.t. ``output``, same shape as ``output``.
            grad_state: optional (grad_h_n, grad_c_n), shaped like (h_n, c_n); zeros if omitted.

        Returns:
            (grad_input, (grad_h0, grad_c0)) shaped like x, h0 and c0.  The parameter gradients
            are written to ``self.grads`` (a dict with the ``state_dict`` keys), which each call
            overwrites rather than accumulates.
        """
        if self._saved is None:
            raise ValueError("backward() needs a forward() run with gradients enabled first "
                             "(none ran, or the last one ran under engine.no_grad()): there is "
                             "nothing to backpropagate through")
        s = self._saved
        g_user = grad_output
        g = check_array("grad_output", grad_output, self.dtype, s["out_shape"],
                        str(s["out_shape"]) + " (the shape of forward's output)", self.backend)
        g = self._to_time_major(self.backend.asarray(g), s["unbatched"])
        dh_n, dc_n = self._check_state("grad_state", grad_state, s["B"], s["unbatched"])
        dx, dh0, dc0 = self._backward(g, dh_n, dc_n)
        to_user = self.backend.to_user
        return (to_user(self._from_time_major(dx, s["unbatched"]), g_user),
                (to_user(self._state_to_user(dh0, s["unbatched"]), g_user),
                 to_user(self._state_to_user(dc0, s["unbatched"]), g_user)))

    def _backward(self, g, dh_n, dc_n):
        xp, L, D, R = self.backend.xp, self.num_layers, self.num_directions, self.output_size
        s = self._saved
        dh0 = xp.array(dh_n)  # updated in place by the BPTT kernels to the gradient on h0
        dc0 = xp.array(dc_n)
        self.grads = {}
        for layer in reversed(range(L)):
            saved = s["layers"][layer]
            d_in = None
            for d in range(D):
                idx = layer * D + d
                dout = g if D == 1 else xp.ascontiguousarray(g[:, :, d * R:(d + 1) * R])
                dz = self._layer_bwd(layer, d, saved, dout, dh0[idx], dc0[idx])
                d_in = self._input_grad(layer, d, dz, d_in, fresh=layer == 0)
            g = d_in if saved["mask"] is None else d_in * saved["mask"]
        return g, dh0, dc0

    def _layer_bwd(self, layer, d, saved, dout, dh, dc):
        """BPTT kernel for one layer and direction, then its weight-gradient GEMMs."""
        T, B, R = dout.shape
        H = self.hidden_size
        fwd = saved["dirs"][d]
        idx = layer * self.num_directions + d
        _, w_hh, _, w_hr = self._layer_params(layer, d)
        ws, dt, lengths = self._ws, self.dtype, self._saved["lengths"]
        dz = ws.get("tbg", (T, B, 4 * H), dt)  # the forward's xproj buffer, see _layer_fwd
        scratch = {"c_prev": ws.get("c_prev", (B, H), dt), "dh_tot": ws.get("dh_tot", (B, H), dt),
                   "dh_rec": ws.get("dh_rec", (B, R), dt)}
        proj = {} if w_hr is None else {"w_hr": w_hr, "dh_proj": ws.get("dh_proj", (T, B, R), dt)}
        self.backend.seq_bwd(dout, fwd["gates"], fwd["c"], self._saved["c0"][idx], w_hh, lengths,
                             self._act, d == 1, dh, dc, dz, scratch, **proj)
        self._weight_grads(layer, d, dz, saved["input"], fwd["h"], self._saved["h0"][idx])
        if w_hr is not None:  # dW_hr = sum over steps of dh_t^T (o * act(c_t)), one GEMM
            self.grads["weight_hr" + _suffix(layer, d)] = self.backend.matmul(
                proj["dh_proj"].reshape(T * B, R).T, fwd["h_raw"].reshape(T * B, H))
        return dz

    def _weight_grads(self, layer, d, dz, x_in, h, h0):
        """dW_ih, dW_hh and the biases from all steps at once (three large GEMMs and a sum)."""
        mm, sfx = self.backend.matmul, _suffix(layer, d)
        T, B, G = dz.shape
        dz2 = dz.reshape(T * B, G)
        # Step t's recurrent input is h[t-1] (h[t+1] in reverse), except at each sequence's
        # first valid step, whose input is h0; the outputs of padded steps are zero.
        rest, h_prev = (dz[:-1], h[1:]) if d == 1 else (dz[1:], h[:-1])
        first = self._saved["lengths"] - 1 if d == 1 else 0
        dw_hh = mm(rest.reshape(-1, G).T, h_prev.reshape(-1, h.shape[2]))
        dw_hh += mm(dz[first, self.backend.xp.arange(B)].T, h0)
        self.grads["weight_ih" + sfx] = mm(dz2.T, x_in.reshape(T * B, -1))
        self.grads["weight_hh" + sfx] = dw_hh
        if self.bias:
            db = dz2.sum(axis=0)
            self.grads["bias_ih" + sfx] = db
            self.grads["bias_hh" + sfx] = db.copy()

    def _input_grad(self, layer, d, dz, d_in, fresh):
        """Add this direction's contribution dz @ W_ih to the layer's input gradient."""
        T, B, G = dz.shape
        w_ih = self._layer_params(layer, d)[0]
        dz2 = dz.reshape(T * B, G)
        if d_in is not None:
            d_in += self.backend.matmul(dz2, w_ih).reshape(d_in.shape)
            return d_in
        shape = (T, B, w_ih.shape[1])
        d_in = self.backend.xp.empty(shape, self.dtype) if fresh else \
            self._ws.get(f"din{layer}", shape, self.dtype)
        self.backend.matmul(dz2, w_ih, out=d_in.reshape(T * B, -1))
        return d_in

    # ------------------------------------------------------------------ checks and layouts
    def _check_input(self, x):
        x = as_array("input", x, self.dtype)
        ndim = x.ndim
        I = self.input_size
        if ndim == 2:
            shape, text = (None, I), f"(T, input_size={I}) for unbatched input"
        elif ndim == 3:
            shape = (None, None, I)
            text = f"({'B, T' if self.batch_first else 'T, B'}, input_size={I})"
        else:
            order = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            raise ValueError(f"input must be 3-D {order} or 2-D (T, input_size) unbatched, with "
                             f"input_size={I}; got shape {x.shape}")
        x = check_array("input", x, self.dtype, shape, text, self.backend)
        return self._to_time_major(self.backend.asarray(x), ndim == 2), ndim == 2

    def _check_lengths(self, lengths, T, B, unbatched):
        """(B,) int64 backend array of valid steps; all T when ``lengths`` is None."""
        xp = self.backend.xp
        if lengths is None:
            return xp.full(B, T, dtype=np.int64)
        if unbatched:
            raise ValueError("lengths is only accepted with batched input (T, B, input_size)")
        if hasattr(lengths, "__cuda_array_interface__"):
            lengths = self.backend.to_numpy(lengths)
        return self.backend.asarray(check_lengths(lengths, B, T))

    def _check_state(self, name, state, B, unbatched):
        """Validate an (h, c) pair shaped (L*dirs, B, H); zeros when ``state`` is None."""
        xp, LD = self.backend.xp, self.num_layers * self.num_directions
        sizes = {"h": self.output_size, "c": self.hidden_size}
        if state is None:
            return tuple(xp.zeros((LD, B, n), self.dtype) for n in sizes.values())
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name} must be a tuple (h, c) of two arrays, got "
                            f"{type(state).__name__}")
        pair = []
        for part, a in zip(("h", "c"), state):
            n = sizes[part]
            what = "proj_size" if part == "h" and self.proj_size else "hidden_size"
            shape = (LD, n) if unbatched else (LD, B, n)
            text = f"(num_layers*num_directions={LD}, " + \
                ("" if unbatched else f"batch={B}, ") + f"{what}={n})"
            a = self.backend.asarray(check_array(f"{name}[{part}]", a, self.dtype, shape, text,
                                                 self.backend))
            pair.append(xp.ascontiguousarray(a[:, None, :] if unbatched else a))
        return tuple(pair)

    def _to_time_major(self, a, unbatched):
        xp = self.backend.xp
        if unbatched:
            return xp.ascontiguousarray(a[:, None, :])
        return xp.ascontiguousarray(a.transpose(1, 0, 2) if self.batch_first else a)

    def _from_time_major(self, a, unbatched):
        if unbatched:
            return a[:, 0, :]
        return self.backend.xp.ascontiguousarray(a.transpose(1, 0, 2)) if self.batch_first \
            else a

    def _state_to_user(self, a, unbatched):
        return a[:, 0, :] if unbatched else a

    def _user_shape(self, T, B, F, unbatched):
        if unbatched:
            return (T, F)
        return (B, T, F) if self.batch_first else (T, B, F)

    # ------------------------------------------------------------------ interop
    @staticmethod
    def from_torch(module, backend=None):
        """An ``LSTM`` equal to a ``torch.nn.LSTM`` (see ``engine.interop``)."""
        from engine.interop import lstm_from_torch

        return lstm_from_torch(module, backend)

    @staticmethod
    def from_keras(weights, batch_first=True, dtype="float32", backend=None):
        """A one-layer ``LSTM`` from a Keras LSTM's ``get_weights()`` (see ``engine.interop``)."""
        from engine.interop import lstm_from_keras

        return lstm_from_keras(weights, batch_first, dtype, backend)

    def to_torch_state_dict(self):
        """{name: torch.Tensor} for ``torch.nn.LSTM.load_state_dict``."""
        from engine.interop import to_torch_state_dict

        return to_torch_state_dict(self)

    def to_keras_weights(self):
        """[kernel, recurrent_kernel, bias] for a Keras LSTM's ``set_weights``."""
        from engine.interop import to_keras_weights

        return to_keras_weights(self)

    def __repr__(self):
        opts = [f"{self.input_size}, {self.hidden_size}"]
        if self.num_layers != 1:
            opts.append(f"num_layers={self.num_layers}")
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("proj_size", 0)):
            if getattr(self, name) != default:
                opts.append(f"{name}={getattr(self, name)}")
        opts.append(f"cell_activation={self.cell_activation!r}, dtype={self.dtype.name!r}, "
                    f"backend={self.backend.name!r}")
        return f"LSTM({', '.join(opts)})"


def _suffix(layer, d):
    return f"_l{layer}" + ("_reverse" if d == 1 else "")
