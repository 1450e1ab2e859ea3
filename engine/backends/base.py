"""The backend protocol: everything ``engine.LSTM`` and the layers ask of a device.

The orchestrator (``engine.lstm``, ``engine.layers``, ``engine.model``) is written once against
this class and never branches on which backend it holds.  A backend owns its arrays (``xp``:
NumPy on the CPU, CuPy on a GPU), the conversions at the API boundary, the matrix product and
the whole-sequence LSTM kernels.  ``engine.backends.cpu.CPUBackend`` and
``engine.backends.gpu.GPUBackend`` implement it.

Shapes use the kernels' letters (``kernels/__init__.py``): T time steps, B batch rows, H hidden
units, G = 4H gates (order i, f, g, o), P the size of h (``proj_size``, else H).  Every array
passed to ``seq_fwd``/``seq_bwd`` is a C-contiguous ``xp`` array of the layer's dtype, except
``lengths`` (int64) and the transposed weight views named so.  "Written" means the kernel
overwrites every element; "updated" means it reads the value and writes a new one in place.
Scratch buffers are the caller's (kept between calls, ``engine.lstm.Workspace``), so the time
loop allocates nothing; their contents on entry and on exit mean nothing.  No argument aliases
another, except that ``seq_bwd``'s ``dz`` is the buffer that held ``seq_fwd``'s ``xproj``
(dead by then).
"""
import abc


class Backend(abc.ABC):
    """A device for ``engine.LSTM`` and the training stack.  Attributes:

    name: "cpu" or "gpu", as the ``backend=`` argument takes it.
    xp: the array module of this backend's arrays (``numpy`` or ``cupy``).
    """

    name = None
    xp = None

    # ------------------------------------------------------------------ arrays at the boundary
    @abc.abstractmethod
    def asarray(self, a):
        """``a`` (a NumPy array, a backend array, or nested lists) as a backend array; no copy
        when it already is one."""

    @abc.abstractmethod
    def to_user(self, a, like):
        """Backend array ``a`` in the array type the user passed in ``like``: NumPy for NumPy
        input, a device array for device input."""

    @abc.abstractmethod
    def to_numpy(self, a):
        """Backend array ``a`` as a NumPy array (a copy from a device)."""

    @abc.abstractmethod
    def all_finite(self, a):
        """Whether every value of ``a`` (a backend array, or a host NumPy array: the training
        stack checks host data) is finite.  Runs before any work, on every input."""

    @abc.abstractmethod
    def scatter_add(self, target, idx, rows):
        """target[idx[k]] += rows[k] for every k, repeated indices accumulated (the embedding
        gradient).  target (V, E) updated; idx (N,) ints in [0, V); rows (N, E)."""

    @abc.abstractmethod
    def synchronize(self):
        """Wait until all queued work is done (for timing; results never need it)."""

    # ------------------------------------------------------------------ products
    @abc.abstractmethod
    def matmul(self, a, b, out=None, bias=None):
        """``a @ b`` (+ ``bias``, one row added to every row) for 2-D arrays: a (M,K) and b
        (K,N), either may be a transposed view; out (M,N) C-contiguous, written, or None for a
        new array; bias (N,) or None.  Returns out."""

    # ------------------------------------------------------------------ the time loops
    @abc.abstractmethod
    def seq_fwd(self, xproj, w_hh_t, h0, c0, lengths, act, reverse, h, c, gates, scratch,
                w_hr_t=None, h_raw=None):
        """One layer and direction through all T steps.

        Read:    xproj (T,B,G) input projection with both biases; w_hh_t (P,G) W_hh.T (a
                 view); h0 (B,P), c0 (B,H); lengths (B,) int64 in 1..T; act (a
                 ``kernels.ACT_*`` code); reverse (bool: run t = T-1 .. 0).
        Written: h (T,B,P), c (T,B,H); gates (T,B,G) the activated gates for the backward, or
                 a (1,B,G) buffer when no backward follows (it then holds nothing useful).
        Scratch: dict "h_prev" (B,P), "c_prev" (B,H), "rec" (B,G).
        Projection (proj_size): w_hr_t (H,P) W_hr.T (a view), read; h_raw (T,B,H) written
                 with o * act(c), which the backward needs.  Both None without projection.
        Padded steps (t >= lengths[b]) write zeros to h and c (pack_padded_sequence).
        """

    @abc.abstractmethod
    def seq_bwd(self, dout, gates, c, c0, w_hh, lengths, act, reverse, dh, dc, dz, scratch,
                w_hr=None, dh_proj=None):
        """BPTT through all T steps of the latest ``seq_fwd`` of this layer and direction.

        Read:    dout (T,B,P) gradient on the outputs h; gates (T,B,G), c (T,B,H) as the
                 forward wrote them; c0 (B,H); w_hh (G,P) W_hh as stored; lengths, act,
                 reverse as in the forward.
        Updated: dh (B,P), dc (B,H): the gradients on h_n, c_n on entry; on h0, c0 on exit.
        Written: dz (T,B,G) the gradients on the gate pre-activations (zero at padded steps),
                 from which the caller forms dW_ih, dW_hh, the biases and the input gradient.
        Scratch: dict "c_prev" (B,H), "dh_tot" (B,H), "dh_rec" (B,P).
        Projection: w_hr (P,H) read; dh_proj (T,B,P) written with the total gradient on each
                 step's h, from which the caller forms dW_hr.
        """

    @abc.abstractmethod
    def ctc(self, logits, labels, input_lengths, target_lengths, scale, blank, zero_infinity):
        """CTC forward-backward fused with log-softmax (``kernels.ctc`` gives the layout).

        Read:    logits (T,B,C) backend array; labels (B,S) int64 extended label rows,
                 input_lengths, target_lengths (B,) int64 and scale (B,) float64, host NumPy.
        Returns: (nll, grad): nll (B,) float64 backend array, -log p(y_b|x_b) (+inf, or 0
                 with zero_infinity, where no alignment exists); grad (T,B,C) of the logits'
                 dtype, scale_b * d nll_b / d logits, zero past each input length.
        """
