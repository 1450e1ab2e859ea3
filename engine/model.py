"""``Sequential``: Embedding / LSTM / Dense layers trained with a loss and an optimizer.

Data at this API is batch-first: x is (N, T, I) floats, or (N, T) token ids when the first layer
is an ``Embedding``.  Each LSTM is fed in its own layout (``batch_first`` or not).

Output modes:
- "many_to_many": the output at every step, (N, T, F); targets (N, T) class ids for
  cross-entropy or (N, T, F) for MSE.  With ``lengths`` the loss ignores steps t >= lengths[n].
- "many_to_one": after the last LSTM only the last valid step is kept (step lengths[n] - 1, or
  T - 1 without lengths; a bidirectional LSTM's reverse half comes from step 0), so layers
  after it see (N, F); targets (N,) or (N, F).

- "ctc" loss (many_to_many): the output at every step is scored against a transcript by
  connectionist temporal classification; targets (N, S) labels in 1..F-1 (output unit 0 is the
  blank), each row padded at its end with -1.  Fewer labels than steps, and no alignment
  given: the speech recognizer's training.

Variable lengths: ``lengths`` goes to every LSTM (``pack_padded_sequence`` semantics, both
directions) and masks the loss, so padded steps never reach the result or the gradients.
A ``Subsample`` layer stacks k adjacent steps into one: the steps after it are
ceil(T / k), each sequence's length maps the same way (``output_lengths``), and many_to_many
targets have the output's steps.
"""
import math
import sys

import numpy as np
from tqdm.auto import tqdm

from engine.checks import (as_array, check_array, check_ids, check_int, check_lengths,
                           check_probability, check_real)
from engine.distributed import GradientBuffer, as_ranks, threads_within_binding
from engine.grad import no_grad, seal
from engine.layers import Dense, Embedding, Subsample
from engine.losses import ctc_loss, mse, softmax_cross_entropy
from engine.lstm import LSTM
from engine.optim import Optimizer, clip_grad_norm

OUTPUTS = ("many_to_many", "many_to_one")
LOSSES = {"mse": mse, "cross_entropy": softmax_cross_entropy, "ctc": ctc_loss}
# The CTC blank is output unit 0; transcripts hold labels 1..F-1, each row padded with PAD.
BLANK, PAD = 0, -1


def set_forget_bias(lstm, value=1.0):
    """Initialise the forget gate's total bias to ``value`` in every layer and direction of an
    ``LSTM`` (Keras ``unit_forget_bias``): the f block (rows H:2H) of ``bias_ih`` is set to
    ``value`` and that of ``bias_hh`` to 0, in place."""
    if not isinstance(lstm, LSTM):
        raise TypeError(f"lstm must be an engine.LSTM, got {type(lstm).__name__}")
    if not lstm.bias:
        raise ValueError("set_forget_bias needs an LSTM built with bias=True")
    value = check_real("forget_bias", value)
    if abs(value) > 1e4:  # a gate bias saturates the sigmoid long before; float32 overflows
        raise ValueError(f"forget_bias must lie in [-1e4, 1e4], got {value}")
    H = lstm.hidden_size
    for name, p in lstm.params.items():
        if name.startswith("bias_ih"):
            p[H:2 * H] = value
        elif name.startswith("bias_hh"):
            p[H:2 * H] = 0


class Sequential:
    """A stack of layers with Keras-like ``compile`` / ``fit`` / ``predict`` / ``evaluate``.

    Args:
        layers: list of ``Embedding`` (first only), ``LSTM``, ``Dense`` and ``Subsample``
            sharing one dtype and backend.
        output: "many_to_many" or "many_to_one" (needs an LSTM).
        forget_bias: total forget-gate bias given to every LSTM with biases (default 1.0);
            None keeps PyTorch's initialisation.
    """

    def __init__(self, layers, output="many_to_many", forget_bias=1.0):
        self.layers = _check_layers(layers)
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.output = output
        lstm_idx = [i for i, layer in enumerate(self.layers) if isinstance(layer, LSTM)]
        if output == "many_to_one" and not lstm_idx:
            raise ValueError("output='many_to_one' needs an LSTM layer to take the last step of")
        self._gather_after = lstm_idx[-1] if output == "many_to_one" else None
        if forget_bias is not None:
            forget_bias = check_real("forget_bias", forget_bias)
            for i in lstm_idx:
                if self.layers[i].bias:
                    set_forget_bias(self.layers[i], forget_bias)
        self.forget_bias = forget_bias
        self.backend = self.layers[0].backend
        self.dtype = self.layers[0].dtype
        self.loss = self.optimizer = self.clip_norm = None
        self.epoch = 0  # epochs completed by fit, saved in checkpoints
        # What a user needs to feed the model new data (a vocabulary, a scaler's statistics):
        # any JSON-serialisable dict, saved in checkpoints and restored by engine.load.
        self.metadata = {}
        self._saved = None
        self._on_batch, self._stop = None, False  # fit's on_batch and its request to stop
        self._ranks = self._grad_buffer = None  # fit's distributed ranks and allreduce buffer
        self._share = None  # (global batch, first row, end row) of this rank's share

    # ------------------------------------------------------------------ parameters
    @property
    def params(self):
        """Flat {"<layer index>.<name>": backend array}, the live parameters."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.params.items()}

    @property
    def grads(self):
        """Flat gradients of the latest backward, keyed like ``params``."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.grads.items()}

    def state_dict(self):
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.state_dict().items()}

    def load_state_dict(self, state_dict):
        """Load ``state_dict()`` output; every layer validates its own entries first."""
        if not hasattr(state_dict, "items"):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        per_layer = [{} for _ in self.layers]
        for key, a in state_dict.items():
            if not isinstance(key, str):
                raise TypeError(f"load_state_dict: keys must be str like '0.weight', got "
                                f"{key!r}")
            idx, _, name = key.partition(".")
            if not idx.isdigit() or int(idx) >= len(self.layers):
                raise ValueError(f"load_state_dict: unexpected key {key!r}")
            per_layer[int(idx)][name] = a
        for layer, sd in zip(self.layers, per_layer):
            layer.load_state_dict(sd)

    # ------------------------------------------------------------------ forward / backward
    def forward(self, x, lengths=None):
        """x: (B, T, I) floats or (B, T) token ids (backend array).  Returns the output."""
        x = self.backend.asarray(x)
        if lengths is not None:
            lengths = check_lengths(lengths, x.shape[0], x.shape[1])
        return self._run(x, None, lengths)[0]

    __call__ = forward

    def _run(self, x, states, lengths):
        """Forward through every layer.  states: None or one (h, c) per LSTM (carried by
        truncated BPTT).  Returns (output, new states)."""
        new_states, k, ctx = [], 0, []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, LSTM):
                state = None if states is None else states[k]
                x, st = _lstm_forward(layer, x, state, lengths)
                new_states.append(st)
                k += 1
            else:
                x = layer.forward(x)
                if isinstance(layer, Subsample) and lengths is not None:
                    lengths = layer.out_lengths(lengths)
            if i == self._gather_after:
                x, ctx = self._gather_last(x, lengths)
        self._saved = ctx
        return x, new_states

    def _gather_last(self, out, lengths):
        """(B, T, F) -> (B, F): each sequence's final output.  A bidirectional LSTM's forward
        half is taken at the last valid step and its reverse half at step 0, where the reverse
        direction has read the whole sequence (PyTorch's h_n, Keras's Bidirectional)."""
        B, T = out.shape[:2]
        last = self.backend.asarray(np.full(B, T - 1) if lengths is None else lengths - 1)
        rows = self.backend.xp.arange(B)
        lstm = self.layers[self._gather_after]
        if not lstm.bidirectional:
            return out[rows, last], (out.shape, rows, last, None)
        H = lstm.hidden_size
        both = self.backend.xp.concatenate([out[rows, last, :H], out[:, 0, H:]], axis=1)
        return both, (out.shape, rows, last, H)

    def _scatter_last(self, grad):
        """Backward of ``_gather_last``: (B, F) -> (B, T, F), zero at the other steps."""
        shape, rows, last, H = self._saved
        full = self.backend.xp.zeros(shape, grad.dtype)
        if H is None:
            full[rows, last] = grad
        else:
            full[rows, last, :H] = grad[:, :H]
            full[:, 0, H:] = grad[:, H:]
        return full

    def backward(self, grad, layer_done=None):
        """Backpropagate dL/d(output) through the latest forward; fills every layer's grads.
        ``layer_done(i)``, if given, is called as soon as layer i's gradients are complete
        (top layer first): a distributed fit starts that layer's allreduce there."""
        for i in reversed(range(len(self.layers))):
            if i == self._gather_after:
                grad = self._scatter_last(grad)
            layer = self.layers[i]
            grad = _lstm_backward(layer, grad) if isinstance(layer, LSTM) else \
                layer.backward(grad)
            if layer_done is not None:
                layer_done(i)

    # ------------------------------------------------------------------ training
    def compile(self, loss, optimizer, clip_norm=None):
        """Choose the loss ("mse", "cross_entropy" or "ctc"), an ``engine.optim`` optimizer
        and optional gradient clipping by global norm."""
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {loss!r}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be an engine SGD or Adam, got "
                            f"{type(optimizer).__name__}")
        if loss == "ctc" and self.output != "many_to_many":
            raise ValueError("loss='ctc' needs output='many_to_many' (a score per step)")
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be None or > 0, got {clip_norm!r}")
        clip_norm = None if clip_norm is None else float(clip_norm)
        self.loss, self.optimizer, self.clip_norm = loss, optimizer, clip_norm
        return self

    def fit(self, x, y, epochs=1, batch_size=32, validation_data=None, shuffle=True, seed=None,
            lengths=None, tbptt=None, patience=None, validation_split=None, verbose=True,
            on_batch=None, distributed=False, steps_per_epoch=None):
        """Train with mini-batches; returns {"loss": [...], "val_loss": [...]} per epoch.

        Args:
            x: (N, T, I) of the model's dtype, or (N, T) ints for an Embedding first layer.
            y: targets (see the module docstring), N rows.  All of x and y is checked before
                the first batch (``_check_inputs``, ``_check_targets``).
            epochs, batch_size: ints >= 1; the last batch may be smaller.
            validation_data: optional (x_val, y_val) or (x_val, y_val, lengths_val).
            shuffle, seed: the order of epoch e is a permutation drawn from seed and the
                model's epoch counter, so a resumed run sees the same batches.
            steps_per_epoch: optional int >= 1, as Keras's: an epoch ends after this many
                batches.  Fewer batches than the data hold make the epochs consecutive parts of
                an endless stream of passes over the data (each pass a permutation drawn from
                seed and the pass's number), so every sample is seen once per pass and the
                epochs that early stopping counts stay the same size however large the data.
            lengths: optional (N,) ints in [1, T].
            tbptt: optional chunk length K (many_to_many only): each batch is cut into chunks
                of K steps, with one update per chunk and (h, c) carried between chunks
                without backpropagating through the boundary.
            validation_split: optional fraction in (0, 1): the last samples (taken before any
                shuffling, as Keras does; the latest ones for chronological data) become the
                validation_data and are not trained on.
            patience: optional int >= 1 (needs validation data): early stopping.  Training
                stops once val_loss has not improved for ``patience`` epochs, and the weights
                of the epoch with the lowest val_loss are restored, as Keras's
                ``EarlyStopping(patience=..., restore_best_weights=True)``; the history then
                holds "best_epoch" (1-based, counted within this call; None if no val_loss was
                finite, and the last weights are kept).
            verbose: show a tqdm bar with the running loss and samples/s, and each epoch's
                val_loss.
            on_batch: optional callable, called after every update (each chunk with tbptt)
                as ``on_batch(loss)``; when it returns True, training stops after that update
                (Keras's ``model.stop_training``), the epoch counting as run: a time budget
                or a progress display checked within epochs.
            distributed: True to train data-parallel on the ranks of an MPI job (``mpiexec -n
                R python script.py``, every rank calling fit on the same data): the same
                training as one process with the same global batches, to rounding (see
                ``engine.distributed``; without a seed, rank 0 draws one for every rank);
                bars and reports from rank 0 only.  A single process (no mpiexec) trains as
                usual.  The history then holds "allreduce_seconds", the time this rank spent
                in the gradient allreduce.
        """
        self._require_compiled()
        ranks = as_ranks(distributed)
        if ranks is None or ranks.size == 1:
            return self._fit(x, y, epochs, batch_size, validation_data, shuffle, seed, lengths,
                             tbptt, patience, validation_split, verbose, on_batch,
                             steps_per_epoch)
        try:
            self._ranks = ranks
            self._grad_buffer = GradientBuffer(self.layers, self.dtype, ranks, self.backend)
            threads_within_binding(ranks)
            self._sync_from_root()
            if shuffle and seed is None:  # every rank must draw the same batches
                seed = ranks.broadcast(int(np.random.default_rng().integers(2**31)))
            history = self._fit(x, y, epochs, batch_size, validation_data, shuffle, seed,
                                lengths, tbptt, patience, validation_split,
                                verbose and ranks.root, on_batch, steps_per_epoch)
            history["allreduce_seconds"] = self._grad_buffer.seconds
            return history
        except TrainingDiverged:
            raise  # every rank saw the same global loss and raises the same
        except Exception as e:
            ranks.abort(e)  # the other ranks would wait in the allreduce for ever
        finally:
            self._ranks = self._grad_buffer = None

    def _sync_from_root(self):
        """Rank 0's weights, optimizer state and epoch counter on every rank."""
        ranks = self._ranks
        self.load_state_dict(ranks.broadcast(self.state_dict() if ranks.root else None))
        self.optimizer.load_state_dict(
            ranks.broadcast(self.optimizer.state_dict() if ranks.root else None), self.params)
        self.epoch = ranks.broadcast(self.epoch)
        for layer in self.layers:
            if isinstance(layer, LSTM):
                layer.set_random_state(ranks.broadcast(layer.random_state()))

    def _fit(self, x, y, epochs, batch_size, validation_data, shuffle, seed, lengths, tbptt,
             patience, validation_split, verbose, on_batch, steps_per_epoch):
        x, y, lengths = self._check_data(x, y, lengths)
        epochs = check_int("epochs", epochs, 1)
        batch_size = check_int("batch_size", batch_size, 1)
        seed = None if seed is None else check_int("seed", seed, 0)
        take = None if steps_per_epoch is None else \
            check_int("steps_per_epoch", steps_per_epoch, 1) * batch_size
        if take is not None and take < len(x) and shuffle and seed is None:
            seed = int(np.random.default_rng().integers(2**31))  # one stream of passes
        if on_batch is not None and not callable(on_batch):
            raise TypeError(f"on_batch must be a callable loss -> bool, got "
                            f"{type(on_batch).__name__}")
        self._on_batch = on_batch
        tbptt = self._check_tbptt(tbptt)
        if validation_split is not None:
            if validation_data is not None:
                raise ValueError("give validation_data or validation_split, not both")
            x, y, lengths, validation_data = _split_last(x, y, lengths, validation_split)
        stopper = None if patience is None else EarlyStopping(patience, validation_data)
        if validation_data is not None:
            validation_data = self._check_data(*_unpack_validation(validation_data))
        history = {"loss": []} if validation_data is None else {"loss": [], "val_loss": []}
        for _ in range(epochs):
            order = _epoch_order(len(x), shuffle, seed, self.epoch, take)
            start = self._snapshot()
            try:
                loss = self._train_epoch(x, y, lengths, order, batch_size, tbptt, verbose)
            except TrainingDiverged as e:
                restored = self._restore_after_divergence(start, stopper)
                raise TrainingDiverged(f"{e}; {restored}: lower the learning rate or clip "
                                       "the gradients (compile's clip_norm)") from None
            history["loss"].append(loss)
            self.epoch += 1
            if self._stop:
                break
            if validation_data is None:
                continue
            history["val_loss"].append(self._evaluate(*validation_data, batch_size))
            if self._end_of_epoch(history, stopper, verbose):
                break
        if stopper is not None:
            history["best_epoch"] = stopper.restore(self)
        return history

    def _check_tbptt(self, tbptt):
        """``fit``'s tbptt: None, or a chunk length for a unidirectional many_to_many model."""
        if tbptt is None:
            return None
        tbptt = check_int("tbptt", tbptt, 1)
        if self.output != "many_to_many":
            raise ValueError("tbptt needs output='many_to_many'")
        if any(getattr(layer, "bidirectional", False) for layer in self.layers):
            raise ValueError("tbptt needs unidirectional LSTMs: a reverse direction cannot "
                             "carry its state from one chunk to the next")
        if self.loss == "ctc" or any(isinstance(layer, Subsample) for layer in self.layers):
            raise ValueError("tbptt cannot cut a CTC loss or a Subsample layer into chunks: "
                             "train on whole sequences")
        return tbptt

    def _end_of_epoch(self, history, stopper, verbose):
        """Report the epoch's losses and feed early stopping; returns whether to stop."""
        epoch = len(history["loss"])
        improved = stopper is not None and stopper.update(self, history["val_loss"][-1], epoch)
        if verbose:
            tqdm.write(f"epoch {self.epoch}: loss {history['loss'][-1]:.4g}, val_loss "
                       f"{history['val_loss'][-1]:.4g}" + ("  (best so far)" if improved else ""),
                       file=sys.stderr)  # beside the bars, off stdout
        if stopper is None or not stopper.should_stop(epoch):
            return False
        if verbose:
            tqdm.write(f"early stop: val_loss has not improved for {stopper.patience} epochs",
                       file=sys.stderr)
        return True

    def _set_training(self, mode):
        """Dropout is active only while training (``LSTM.train``/``eval``)."""
        for layer in self.layers:
            if hasattr(layer, "train"):
                layer.train(mode)

    def _snapshot(self):
        """Copies of the weights and the optimizer state, to go back to after a divergence."""
        return self.state_dict(), self.optimizer.state_dict()

    def _restore_after_divergence(self, start, stopper):
        """Load the best epoch's weights (early stopping) or those of the epoch's start;
        returns what was restored, for the message."""
        weights, opt = start
        self.optimizer.load_state_dict(opt, self.params)
        if stopper is not None and stopper.weights is not None:
            self.load_state_dict(stopper.weights)
            return f"the weights of the best epoch so far ({stopper.best_epoch}) are restored"
        self.load_state_dict(weights)
        return f"the weights from the start of epoch {self.epoch + 1} are restored"

    def _after_update(self, loss):
        """Run ``fit``'s on_batch; remember whether it asked to stop (rank 0 decides for
        every rank in a distributed fit: a time budget must not stop one rank alone)."""
        if self._on_batch is None:
            return
        stop = bool(self._on_batch(float(loss)))
        if self._ranks is not None:
            stop = self._ranks.broadcast(stop)
        self._stop = self._stop or stop

    def _train_epoch(self, x, y, lengths, order, batch_size, tbptt, verbose):
        self._set_training(True)
        self._stop = False
        total, count = 0.0, 0
        bar = tqdm(total=len(order), unit="sample", unit_scale=True, disable=not verbose,
                   desc=f"epoch {self.epoch + 1}", leave=True)
        with bar:
            for batch, start in enumerate(range(0, len(order), batch_size), start=1):
                rows = order[start:start + batch_size]
                mine = rows if self._ranks is None else self._ranks.share(rows)
                self._share = (len(rows), *self._ranks.bounds(len(rows))) if self._ranks \
                    else None
                longest = None if lengths is None else int(lengths[rows].max())
                xb, yb, lb = _take(mine, x, y, lengths, self.backend,
                                   *(() if tbptt else self._steps_kept(longest)))
                try:
                    loss = self._train_tbptt(xb, yb, lb, tbptt, longest) if tbptt else \
                        self._train_step(xb, yb, lb)
                except TrainingDiverged as e:
                    raise TrainingDiverged(f"training diverged at epoch {self.epoch + 1}, "
                                           f"batch {batch} ({e})") from None
                n = self._weight(None if lengths is None else lengths[rows],
                                 (len(rows),) + x.shape[1:])
                total += float(loss) * n
                count += n
                bar.update(len(rows))
                bar.set_postfix(loss=f"{total / count:.4g}", refresh=False)
                if not tbptt:
                    self._after_update(loss)
                if self._stop:
                    break
        return total / count

    def _train_step(self, xb, yb, lb):
        """One forward/backward/update on a whole batch; returns the loss (0-d array)."""
        return self._update_on(xb, yb, lb, lb, None, 0)[0]

    def _train_tbptt(self, xb, yb, lb, K, longest):
        """Truncated BPTT over chunks of K steps, one update per chunk; (h, c) is carried to
        the next chunk as plain arrays, so no gradient crosses the boundary.  The LSTM gets no
        lengths here (chunks may hold ended sequences); the loss mask still excludes padding.
        ``longest``: the global batch's longest sequence (None: all of T), after which no
        chunk is run.  Returns the step-weighted mean chunk loss."""
        T = xb.shape[1]
        states, total, steps = None, 0.0, 0
        for t0 in range(0, T, K):
            if longest is not None and longest <= t0:
                break  # every sequence has ended
            t1 = min(t0 + K, T)
            loss, states = self._update_on(xb[:, t0:t1], yb[:, t0:t1], lb, None, states, t0)
            total += float(loss) * (t1 - t0)
            steps += t1 - t0
            self._after_update(loss)
            if self._stop:
                break
        return total / steps

    def _update_on(self, xb, yb, lb, lstm_lengths, states, t0):
        """Forward (from ``states``), loss on steps t0.., backward, clip, optimizer step.
        Returns (loss, the LSTMs' final states).  Raises TrainingDiverged, before the update,
        when the loss is not finite, and after it when a weight is not (the caller restores
        finite weights)."""
        if self._ranks is not None:
            return self._update_on_ranks(xb, yb, lb, lstm_lengths, states, t0)
        out, new_states = self._run(xb, states, lstm_lengths)
        loss, grad = self._loss_and_grad(out, yb, lb, t0)
        if not math.isfinite(float(loss)):
            raise TrainingDiverged(f"loss = {float(loss)}")
        self.backward(grad)
        self._step(self.grads, loss)
        return loss, new_states

    def _step(self, grads, loss):
        """Clip, then the optimizer step; TrainingDiverged when a weight is no longer
        finite."""
        if self.clip_norm is not None:
            clip_grad_norm(grads, self.clip_norm)
        self.optimizer.step(self.params, grads)
        bad = [k for k, p in self.params.items() if not self.backend.all_finite(p)]
        if bad:
            raise TrainingDiverged(f"loss = {float(loss):.4g}, then weights {bad[:3]} became "
                                   "NaN or Inf")

    def _update_on_ranks(self, xb, yb, lb, lstm_lengths, states, t0):
        """``_update_on`` for this rank's share of a global batch: the gradients and loss,
        each weighted by this rank's number of loss terms, are summed over the ranks in one
        allreduce and divided by the global count, which is one process's update on the whole
        batch.  The loss check comes after the allreduce, so every rank decides alike.  A
        rank with no loss term in the batch (no rows, or only sequences that ended before a
        truncated-BPTT chunk) adds zeros and keeps its states."""
        loss, count = 0.0, self._weight(lb, xb.shape, t0)
        buf = self._grad_buffer
        lstms = [layer for layer in self.layers if isinstance(layer, LSTM)]
        new_states = states
        if count:
            for lstm in lstms:  # dropout masks drawn for the global batch, then sliced
                lstm._share = self._share
            try:
                out, new_states = self._run(xb, states, lstm_lengths)
            finally:
                for lstm in lstms:
                    lstm._share = None
            loss, grad = self._loss_and_grad(out, yb, lb, t0)
            self.backward(grad, lambda i: buf.add_layer(i, count))
            loss = float(loss)
        else:
            for lstm in lstms:
                lstm.skip_dropout(xb.shape[1], self._share[0])
            for i in reversed(range(len(self.layers))):  # the same allreduces, of zeros
                buf.add_layer(i, 0)
        grads, loss, _ = buf.finish(loss, count)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"loss = {loss}")
        self._step(grads, loss)
        return loss, new_states

    def _loss_and_grad(self, out, yb, lb, t0=0):
        lb = None if lb is None else self.output_lengths(lb)
        if self.loss == "ctc":
            return self._ctc_and_grad(out, yb, lb)
        mask = None
        if lb is not None and self.output == "many_to_many":
            steps = np.arange(t0, t0 + out.shape[1])
            mask = self.backend.asarray(steps[None, :] < lb[:, None])
        return LOSSES[self.loss](out, self.backend.asarray(yb), mask)

    def _ctc_and_grad(self, out, yb, lb):
        """CTC on batch-first scores (B, T, F) and -1-padded transcripts (B, S), with the
        "mean" reduction of torch (each sequence's loss over its transcript length, then the
        batch mean).  Returns the loss and its gradient, batch-first."""
        xp = self.backend.xp
        B, T = out.shape[:2]
        logits = xp.ascontiguousarray(out.transpose(1, 0, 2))
        input_lengths = np.full(B, T) if lb is None else lb
        loss, grad = ctc_loss(logits, yb, input_lengths, (yb != PAD).sum(axis=1), blank=BLANK,
                              backend=self.backend)
        return loss, xp.ascontiguousarray(grad.transpose(1, 0, 2))

    def _steps_kept(self, longest):
        """(input steps, target steps) a batch whose longest sequence has ``longest`` steps
        is cut to for training and evaluation: padding past it cannot change a result (the
        LSTMs and the loss see each sequence's own length), so it is not computed.  Targets
        are cut only where they run over the output's steps (many_to_many, not CTC)."""
        if longest is None:
            return None, None
        per_step = self.output == "many_to_many" and self.loss != "ctc"
        return longest, self._out_steps(longest) if per_step else None

    def output_lengths(self, lengths):
        """Each sequence's steps at the output: ``lengths`` through every Subsample."""
        lengths = np.asarray(lengths)
        for layer in self.layers:
            if isinstance(layer, Subsample):
                lengths = layer.out_lengths(lengths)
        return lengths

    def _out_steps(self, T):
        """Steps at the output for inputs of T steps."""
        return int(self.output_lengths(np.array([T]))[0])

    def _weight(self, lb, shape, t0=0):
        """How many loss terms a batch (or a truncated-BPTT chunk of it starting at step t0)
        averages over, to combine batch means."""
        if self.output == "many_to_one" or self.loss == "ctc" or len(shape) < 2:
            return shape[0]
        T = self._out_steps(shape[1])
        if lb is None:
            return shape[0] * T
        return int(np.clip(self.output_lengths(lb) - t0, 0, T).sum())

    # ------------------------------------------------------------------ inference
    def predict(self, x, batch_size=256, lengths=None, states=None, return_states=False,
                verbose=False):
        """Outputs for all N samples as a NumPy array, computed batch by batch.

        Args:
            states: optional initial state of every LSTM layer: a list with one (h, c) pair
                per LSTM, h and c shaped like that LSTM's h_0 and c_0 with N as the batch
                ((num_layers * dirs, N, H)); zeros when omitted.
            return_states: also return the final states, as ``(output, states)`` with
                ``states`` in the form above, to carry on in a later call: generating one
                token per call, or a long sequence cut into chunks.
            verbose: show a tqdm bar over the samples.
        """
        batch_size = check_int("batch_size", batch_size, 1)
        x, _, lengths = self._check_data(x, None, lengths)
        states = self._check_states(states, len(x))
        self._set_training(False)
        outs, finals = [], []
        with no_grad():
            for rows in _batches(len(x), batch_size, verbose, "predict"):
                xb, _, lb = _take(rows, x, None, lengths, self.backend)
                sb = None if states is None else [(h[:, rows], c[:, rows]) for h, c in states]
                out, new = self._run(xb, sb, lb)
                outs.append(self.backend.to_numpy(out))
                if return_states:  # host copies only when asked for (a GPU copy per batch)
                    finals.append([tuple(self.backend.to_numpy(a) for a in st) for st in new])
        out = _join(outs, axis=0)
        if not return_states:
            return out
        return out, [tuple(_join([f[k][i] for f in finals], axis=1) for i in (0, 1))
                     for k in range(len(finals[0]))]

    def evaluate(self, x, y, batch_size=256, lengths=None, verbose=False):
        """Mean loss over all valid positions of (x, y), as a float; ``verbose`` shows a tqdm
        bar over the samples."""
        self._require_compiled()
        batch_size = check_int("batch_size", batch_size, 1)
        return self._evaluate(*self._check_data(x, y, lengths), batch_size, verbose)

    def _evaluate(self, x, y, lengths, batch_size, verbose=False):
        """Mean loss over (x, y); within a distributed fit each rank takes its share of the
        samples and the sums are reduced over the ranks."""
        self._set_training(False)
        mine = np.arange(len(x)) if self._ranks is None else self._ranks.share(np.arange(len(x)))
        total, count = 0.0, 0
        with no_grad():
            for rows in _batches(len(mine), batch_size, verbose, "evaluate"):
                longest = None if lengths is None else int(lengths[mine[rows]].max(initial=1))
                xb, yb, lb = _take(mine[rows], x, y, lengths, self.backend,
                                   *self._steps_kept(longest))
                loss, _ = self._loss_and_grad(self._run(xb, None, lb)[0], yb, lb)
                n = self._weight(lb, xb.shape)
                total += float(loss) * n
                count += n
        if self._ranks is not None:
            total, count = self._ranks.allreduce_(np.array([total, count], dtype=np.float64))
        return total / count

    # ------------------------------------------------------------------ checks
    def _require_compiled(self):
        if self.loss is None:
            raise ValueError("call model.compile(loss=..., optimizer=...) before fit/evaluate")

    def _check_data(self, x, y, lengths):
        """Validate host data: N rows everywhere, dtypes, lengths in [1, T]."""
        ids = isinstance(self.layers[0], Embedding)
        x = as_array("x", x, None if ids else self.dtype)
        if x.ndim < 2:
            raise ValueError(f"x must be an array (N, T, ...) with N samples, got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        self._check_inputs(x, ids)
        N, T = x.shape[:2]
        if lengths is not None:
            lengths = check_lengths(lengths, N, T)
        if y is not None and self.loss == "ctc":
            y = self._check_transcripts(y, N, self.output_lengths(
                np.full(N, T) if lengths is None else lengths))
        elif y is not None:
            y = as_array("y", y, None if self.loss == "cross_entropy" else self.dtype)
            self._check_targets(y, N, self._out_steps(T))
        return x, y, lengths

    def _check_inputs(self, x, ids):
        """All of x against the first layer, so that a bad sample stops fit before the first
        batch rather than in the middle of an epoch."""
        first = self.layers[0]
        if ids:
            if x.ndim != 2:
                raise ValueError(f"x must be (N, T) token ids for the Embedding, got shape "
                                 f"{tuple(x.shape)}")
            check_ids("x", x, first.num_embeddings, "token ids")
            return
        size = first.input_size if isinstance(first, LSTM) else first.in_features
        check_array("x", x, self.dtype, (None, None, size), f"(N, T, {size}) for the first layer",
                    self.backend)

    def _check_states(self, states, N):
        """``predict``'s states: one (h, c) pair per LSTM layer, with N as the batch axis."""
        if states is None:
            return None
        lstms = [layer for layer in self.layers if isinstance(layer, LSTM)]
        if not isinstance(states, (list, tuple)) or len(states) != len(lstms):
            got = f"{type(states).__name__}" + \
                (f" of length {len(states)}" if isinstance(states, (list, tuple)) else "")
            raise TypeError(f"states must be a list of {len(lstms)} (h, c) pairs, one per "
                            f"LSTM layer (as predict(..., return_states=True) gives), got {got}")
        checked = []
        for k, (lstm, pair) in enumerate(zip(lstms, states)):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise TypeError(f"states[{k}] must be a pair (h, c), got {type(pair).__name__}")
            LD = lstm.num_layers * lstm.num_directions
            checked.append(tuple(
                check_array(f"states[{k}][{part}]", a, self.dtype, (LD, N, n),
                            f"(num_layers*num_directions={LD}, N={N}, {n})", self.backend)
                for part, a, n in (("h", pair[0], lstm.output_size),
                                   ("c", pair[1], lstm.hidden_size))))
        return checked

    def _check_transcripts(self, y, N, steps):
        """CTC targets: (N, S) labels in 1..F-1, each row padded at its end with -1, and each
        transcript short enough for its sequence's ``steps`` at the output (CTC needs a step
        per label plus one between adjacent repeats).  Returns y as int64."""
        F = _out_features(self.layers[-1])
        y = as_array("y", y)
        if y.dtype.kind not in "iu" or y.ndim != 2 or y.shape[0] != N:
            raise ValueError(f"y must be (N={N}, S) integer transcripts for loss='ctc' "
                             f"(labels 1..{F - 1}, rows padded with {PAD}), got dtype "
                             f"{y.dtype} shape {tuple(y.shape)}")
        y = y.astype(np.int64)
        valid = y != PAD
        problems = [
            (valid[:, 1:] & ~valid[:, :-1], f"{PAD} is padding and may only end a row"),
            (valid & ((y < 1) | (y >= F)), f"labels must lie in 1..{F - 1} (0 is the blank)"),
        ]
        for bad, why in problems:
            rows = np.flatnonzero(bad.any(axis=1))
            if rows.size:
                raise ValueError(f"y[{rows[0]}] = {y[rows[0]].tolist()}: {why}")
        need = valid.sum(axis=1) + ((y[:, 1:] == y[:, :-1]) & valid[:, 1:]).sum(axis=1)
        short = np.flatnonzero(need > steps)
        if short.size:
            i = short[0]
            raise ValueError(f"y[{i}]: a transcript of {valid[i].sum()} labels needs at least "
                             f"{need[i]} output steps (one per label, one between repeats); "
                             f"sample {i} gives {steps[i]}")
        return y

    def _check_targets(self, y, N, T):
        """y against this model's output and loss: (N,) or (N, T) class ids in [0, F) for
        cross-entropy, (N, F) or (N, T, F) floats of the model's dtype for MSE."""
        F = _out_features(self.layers[-1])
        lead = ((f"N={N}", N),) if self.output == "many_to_one" else \
            ((f"N={N}", N), (f"T={T}", T))
        if self.loss == "mse":
            lead += ((f"F={F}", F),)
        want = "(" + ", ".join(name for name, _ in lead) + ("," if len(lead) == 1 else "") + ")"
        shape = tuple(n for _, n in lead)
        if tuple(y.shape) != shape:
            raise ValueError(f"y must have shape {want} for {self.output} output and "
                             f"{self.loss} loss, got {tuple(y.shape)}")
        if self.loss == "cross_entropy":
            check_ids("y", y, F, "class ids")
        else:
            check_array("y", y, self.dtype, shape, want, self.backend)

    def save(self, path, distributed=False):
        """Write weights, optimizer state and configuration to one .npz, atomically.
        ``distributed=True`` in an MPI job: rank 0 writes while the other ranks wait, so every
        rank may load the file once this returns (to resume, on any number of ranks)."""
        from engine.checkpoint import save

        ranks = as_ranks(distributed)
        if ranks is None or ranks.root:
            save(self, path)
        if ranks is not None:
            ranks.barrier()

    def summary(self):
        """Print one line per layer (output shape, parameter count) and the total, as Keras's
        ``model.summary()`` does."""
        rows, lead = [], "(N, T, "
        for i, layer in enumerate(self.layers):
            n = sum(int(p.size) for p in layer.params.values())
            rows.append((f"{i}: {type(layer).__name__}", f"{lead}{_out_features(layer)})", n))
            if i == self._gather_after:
                rows[-1] = (rows[-1][0] + " (last step)", f"(N, {_out_features(layer)})", n)
                lead = "(N, "
        total = sum(n for *_, n in rows)
        lines = [f"{'layer':<28}{'output shape':<20}{'parameters':>12}", "-" * 60]
        lines += [f"{name:<28}{shape:<20}{n:>12,}" for name, shape, n in rows]
        lines += ["-" * 60, f"{'total':<48}{total:>12,}",
                  f"dtype {self.dtype.name}, backend {self.backend.name}, output {self.output}"]
        print("\n".join(lines))

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n  {inner}\n], output={self.output!r})"



class TrainingDiverged(FloatingPointError):
    """``fit`` met a non-finite loss or weight: it stops and restores finite weights (the best
    epoch's with early stopping, else those of the epoch's start) before raising this."""


class EarlyStopping:
    """Keras's ``EarlyStopping(patience=..., restore_best_weights=True)`` on val_loss, for
    ``Sequential.fit``: remembers the weights of the epoch with the lowest val_loss."""

    def __init__(self, patience, validation_data):
        self.patience = check_int("patience", patience, 1)
        if validation_data is None:
            raise ValueError("patience (early stopping) needs validation_data or "
                             "validation_split")
        self.best, self.best_epoch, self.weights = np.inf, None, None

    def update(self, model, val_loss, epoch):
        """Record epoch's val_loss (epochs count from 1 within a fit); keep the model's weights
        when it is the lowest so far.  Returns whether it was."""
        if not val_loss < self.best:
            return False
        self.best, self.best_epoch, self.weights = val_loss, epoch, model.state_dict()
        return True

    def should_stop(self, epoch):
        """Whether ``patience`` epochs have passed without a new lowest val_loss."""
        return epoch - (self.best_epoch or 0) >= self.patience

    def restore(self, model):
        """Load the best epoch's weights into ``model`` (if any val_loss was finite) and
        return that epoch, or None."""
        if self.weights is not None:
            model.load_state_dict(self.weights)
        return self.best_epoch


def _lstm_forward(lstm, x, state, lengths):
    """Run an LSTM on batch-first x (B, T, F); returns (B, T, dirs*H) and (h_n, c_n)."""
    xp = lstm.backend.xp
    if not lstm.batch_first:
        x = xp.ascontiguousarray(x.transpose(1, 0, 2))
    out, st = lstm.forward(x, state, lengths=lengths)
    if not lstm.batch_first:
        out = xp.ascontiguousarray(out.transpose(1, 0, 2))
    return out, st


def _lstm_backward(lstm, grad):
    xp = lstm.backend.xp
    if not lstm.batch_first:
        grad = xp.ascontiguousarray(grad.transpose(1, 0, 2))
    dx = lstm.backward(grad)[0]
    return dx if lstm.batch_first else xp.ascontiguousarray(dx.transpose(1, 0, 2))


def _check_layers(layers):
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError("layers must be a non-empty list of Embedding, LSTM, Dense and "
                        "Subsample")
    for i, layer in enumerate(layers):
        if not isinstance(layer, (Embedding, LSTM, Dense, Subsample)):
            raise TypeError(f"layers[{i}] must be Embedding, LSTM, Dense or Subsample, got "
                            f"{type(layer).__name__}")
        if isinstance(layer, Embedding) and i != 0:
            raise ValueError(f"layers[{i}]: an Embedding can only be the first layer")
        if layer.dtype != layers[0].dtype or layer.backend.name != layers[0].backend.name:
            raise ValueError(f"layers[{i}] has dtype {layer.dtype} on {layer.backend.name}, "
                             f"layers[0] has {layers[0].dtype} on {layers[0].backend.name}")
        if i and _in_features(layer) != _out_features(layers[i - 1]):
            raise ValueError(f"layers[{i}] ({type(layer).__name__}) takes "
                             f"{_in_features(layer)} features, but layers[{i - 1}] gives "
                             f"{_out_features(layers[i - 1])}")
    return list(layers)


def _in_features(layer):
    """Size of the last axis a layer takes (LSTM and Dense)."""
    return layer.input_size if isinstance(layer, LSTM) else layer.in_features


def _out_features(layer):
    """Size of the last axis of a layer's output."""
    if isinstance(layer, (Dense, Subsample)):
        return layer.out_features
    if isinstance(layer, LSTM):
        return layer.num_directions * layer.output_size
    return layer.embedding_dim


def _split_last(x, y, lengths, fraction):
    """(x, y, lengths) without their last ``fraction`` of samples, and those samples as
    validation data (Keras's cut: the first int(N * (1 - fraction)) samples train)."""
    fraction = check_probability("validation_split", fraction)
    cut = int(len(x) * (1.0 - fraction))
    if not 0 < cut < len(x):
        raise ValueError(f"validation_split={fraction} leaves {cut} of {len(x)} samples to "
                         f"train on: both parts must be non-empty")
    head, tail = (None, None) if lengths is None else (lengths[:cut], lengths[cut:])
    return x[:cut], y[:cut], head, (x[cut:], y[cut:], tail)


def _unpack_validation(data):
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise TypeError("validation_data must be (x_val, y_val) or (x_val, y_val, lengths_val)")
    return tuple(data) + (None,) * (3 - len(data))


def _epoch_order(N, shuffle, seed, epoch, take=None):
    """Sample order of one epoch: all N samples, a permutation seeded by (seed, epoch) when
    shuffling with a seed; or, with ``take`` < N, samples epoch * take onwards of the endless
    stream of such passes (pass k seeded by (seed, k)), ``take`` of them."""
    if take is None or take >= N:
        return _pass_order(N, shuffle, seed, epoch)
    start = epoch * take
    first, last = start // N, (start + take - 1) // N
    stream = np.concatenate([_pass_order(N, shuffle, seed, k) for k in range(first, last + 1)])
    return stream[start - first * N:][:take]


def _pass_order(N, shuffle, seed, number):
    """One pass over N samples: in order, or a permutation seeded by (seed, number)."""
    if not shuffle:
        return np.arange(N)
    rng = np.random.default_rng(None if seed is None else [int(seed), int(number)])
    return rng.permutation(N)


def _join(parts, axis):
    """np.concatenate, without its copy when there is one part (one batch: generation's
    one-token calls)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis)


def _batches(N, batch_size, verbose, desc):
    """Row slices of consecutive batches, behind a tqdm bar when verbose (none is made
    otherwise: a disabled bar would still cost predict's one-token calls about 7 us on a Zen 5)."""
    rows = [slice(start, start + batch_size) for start in range(0, N, batch_size)]
    return tqdm(rows, desc=desc, unit="batch") if verbose else rows


def _take(idx, x, y, lengths, backend, steps=None, y_steps=None):
    """One batch: x and y rows on the backend, lengths (host NumPy) or None; x cut to its
    first ``steps`` steps and y to ``y_steps`` when given."""
    xb = seal(backend.asarray(np.ascontiguousarray(x[idx, :steps])))  # ours: no copy to keep
    yb = None if y is None else np.ascontiguousarray(y[idx, :y_steps] if y_steps else y[idx])
    return xb, yb, None if lengths is None else lengths[idx]
