"""The three classifiers of a label draw, each tuned on the draw's validation split only.

``svm_errors``: a linear L2-SVM (squared hinge, L2 penalty, one-vs-rest; scikit-learn's LinearSVC)
on standardised features, C chosen on the validation split. With fewer labelled images than features
the SVM is solved in the labelled images' span (an exact change of basis: the weight vector lies in
that span, and lengths and dot products are kept), which is the same fit 3-6x faster.

``cnn_errors``: a supervised CNN of D's architecture (D's layers, its one-logit head widened to one
logit per class, the paper's N(0, 0.02) init) trained on the labelled images alone with Adam and
cross-entropy; the epoch count is chosen on the validation split (the best of every EVAL_EVERY epochs).
"""
import copy

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from torch import nn

from trainables.models import build_discriminator, weights_init

C_GRID = tuple(10.0 ** k for k in np.arange(-5, -1.9, 0.5))   # 1e-5 ... 1e-2: wider C all fit the labels exactly
SVM_MAX_ITER = 20000
CNN_LR = 1e-3          # Adam, PyTorch's default betas: a supervised net, not the GAN's beta1 0.5
CNN_BATCH = 100
EVAL_EVERY = 5         # epochs between validation errors
EVAL_BATCH = 1000


def svm_errors(train, val, test, seed):
    """``{"C", "val_error", "test_error"}`` of the SVM; each argument is ``(features, labels)``."""
    scaler = StandardScaler().fit(train[0])
    span = _span(scaler.transform(train[0]))
    x_train, x_val, x_test = (_in_span(scaler, span, x) for x in (train[0], val[0], test[0]))
    best = None
    for C in C_GRID:
        svm = LinearSVC(C=C, loss="squared_hinge", penalty="l2", dual=True, fit_intercept=False,
                        max_iter=SVM_MAX_ITER, random_state=seed).fit(x_train, train[1])
        val_error = _svm_error(svm, x_val, val[1])
        if best is None or val_error < best[0]:   # ties: the smaller C
            best = (val_error, C, svm)
    val_error, C, svm = best
    return {"C": C, "val_error": val_error, "test_error": _svm_error(svm, x_test, test[1])}


def _svm_error(svm, x, labels):
    return float(np.mean(svm.predict(x) != labels))


def _span(x):
    """Orthonormal rows spanning the labelled images' standardised features and a constant 1 (the
    intercept, penalised as liblinear does)."""
    _, _, vt = np.linalg.svd(_with_one(x), full_matrices=False)
    return vt


def _in_span(scaler, span, x):
    return _with_one(scaler.transform(x)) @ span.T


def _with_one(x):
    return np.hstack([x, np.ones((len(x), 1), dtype=x.dtype)])


def classifier_like_d(cfg, n_classes):
    """D's architecture for ``cfg`` with its last layer giving ``n_classes`` logits, initialised the paper's way."""
    net = build_discriminator(cfg)
    i, last = next((i, m) for i, m in reversed(list(enumerate(net.main))) if isinstance(m, (nn.Conv2d, nn.Linear)))
    if isinstance(last, nn.Conv2d):
        net.main[i] = nn.Conv2d(last.in_channels, n_classes, last.kernel_size, last.stride, last.padding)
    else:
        net.main[i] = nn.Linear(last.in_features, n_classes)
    net.apply(weights_init)
    return nn.Sequential(net.main, nn.Flatten())   # (n, n_classes)


def cnn_errors(cfg, train, val, test, epochs, seed):
    """``{"epochs", "val_error", "test_error"}`` of the supervised CNN; each argument is ``(images in
    [-1, 1], labels)`` as tensors."""
    torch.manual_seed(seed)
    n_classes = int(train[1].max()) + 1
    net = classifier_like_d(cfg, n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=CNN_LR)
    order = torch.Generator().manual_seed(seed)
    best = (float("inf"), 0, None)
    for epoch in range(1, epochs + 1):
        net.train()
        for batch in torch.randperm(len(train[1]), generator=order).split(CNN_BATCH):
            loss = nn.functional.cross_entropy(net(train[0][batch]), train[1][batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if epoch % EVAL_EVERY == 0 or epoch == epochs:
            val_error = _error(net, *val)
            if val_error < best[0]:
                best = (val_error, epoch, copy.deepcopy(net.state_dict()))
    val_error, epoch, state = best
    net.load_state_dict(state)
    return {"epochs": epoch, "val_error": val_error, "test_error": _error(net, *test)}


@torch.no_grad()
def _error(net, images, labels):
    net.eval()
    wrong = sum(int((net(x).argmax(1) != y).sum()) for x, y in zip(images.split(EVAL_BATCH), labels.split(EVAL_BATCH)))
    return wrong / len(labels)
