"""Independent float64 numpy implementations used as test oracles.

Nothing here imports the engine: these are written from the algorithm's
definition (DESIGN.md), not from the C code.
"""

from __future__ import annotations

import numpy as np


def dense_rows(ds, rows):
    """The sparse inputs of `rows` as a dense float64 matrix."""
    X = np.zeros((len(rows), ds.n_features))
    for i, r in enumerate(rows):
        a, b = ds.indptr[r], ds.indptr[r + 1]
        X[i, ds.indices[a:b]] = ds.values[a:b]
    return X


def forward(Ws, bs, X):
    """Activations of every layer; Ws are logical (n_out, n_in) matrices."""
    acts = [X]
    for i, (W, b) in enumerate(zip(Ws, bs)):
        z = acts[-1] @ W.T + b
        acts.append(np.maximum(z, 0.0) if i < len(Ws) - 1 else z)
    return acts


def loss_and_grads(Ws, bs, X, label_lists):
    """Mean softmax cross-entropy against the uniform distribution over each
    sample's labels, with every output active; gradients of W and b."""
    acts = forward(Ws, bs, X)
    z = acts[-1]
    B = len(X)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    Y = np.zeros_like(p)
    for i, labs in enumerate(label_lists):
        Y[i, labs] = 1.0 / len(labs)
    loss = -(Y * np.log(p)).sum() / B
    delta = (p - Y) / B
    gWs, gbs = [None] * len(Ws), [None] * len(Ws)
    for l in range(len(Ws) - 1, -1, -1):
        gWs[l] = delta.T @ acts[l]
        gbs[l] = delta.sum(axis=0)
        if l > 0:
            delta = (delta @ Ws[l]) * (acts[l] > 0)
    return loss, gWs, gbs


def adam(w, m, v, g, t, lr, b1, b2, eps, rows=None):
    """Adam with the bias correction folded into the step size (Kingma & Ba, sec. 2).
    rows: boolean mask of rows updated (None: all). Returns new (w, m, v)."""
    w, m, v = w.copy(), m.copy(), v.copy()
    sel = slice(None) if rows is None else rows
    lr_t = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    m[sel] = b1 * m[sel] + (1 - b1) * g[sel]
    v[sel] = b2 * v[sel] + (1 - b2) * g[sel] ** 2
    w[sel] = w[sel] - lr_t * m[sel] / (np.sqrt(v[sel]) + eps)
    return w, m, v
