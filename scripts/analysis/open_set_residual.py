#!/usr/bin/env python3
"""Open-set scores from the backbone's features, beyond the distance from their mean.

The device's rule adds to the nearest-prototype distance an atypicality: the distance of the
photo's unit backbone features from the training photos' mean. This script compares it, on the
untrained baseline's saved features of several splits (`sporeprint eval --data DATA --seed S
--save DIR`), with scores that use the within-species scatter the LDA head is fitted from:

- residual: the part of the whitened features (within-species scatter shrunk as the head does)
  that lies outside the span of the training species' means, i.e. what the head's projection
  drops. A photo of a known species has only within-species noise there; a new species also has
  the part of its own mean that no known species' means span.
- mahalanobis: the whitened distance to the nearest training species' mean (Lee et al. 2018,
  with the shared, shrunk covariance).

Each score is measured alone and added to the nearest-prototype distance of the shipped head
(LDA + constant coordinate), standardised like the atypicality. Last, a score trained on held-out
species: a logistic regression on ten of these scores (two nearest distances and their ratio, the
fifth, atypicality, residual, Mahalanobis, the calibrated softmax's top probability, the nearest
and third-nearest training photo), fitted on the other four blocks' known and unseen photos of
the same split and tested on the block left out. Five blocks of 15 held-out species (0-14, 50-64,
100-114, 150-164 and the usual last 15) on every split; AUROC of unseen-species photos against
the validation photos of known ones.

usage: open_set_residual.py BASELINE_DIR...   (numpy; the project's .venv has it)
"""
import sys

import numpy as np

from other_unseen_blocks import distances, load, prototypes, unit


def whitening(x, y, shrinkage):
    mean = x.mean(0)
    within, means = np.zeros((x.shape[1],) * 2), []
    for s in sorted(set(y)):
        z = x[y == s]
        within += (z - z.mean(0)).T @ (z - z.mean(0))
        means.append(z.mean(0))
    within /= len(y)
    within += shrinkage * np.trace(within) / within.shape[0] * np.eye(within.shape[0])
    values, vectors = np.linalg.eigh(within)
    return mean, np.array(means), vectors / np.sqrt(values)


def head(x, y, e, whiten, mean, means, dim=127, constant=0.25):
    between = whiten.T @ ((means - mean).T @ (means - mean) / len(means)) @ whiten
    b_values, b_vectors = np.linalg.eigh(between)
    projected = (e - mean) @ (whiten @ b_vectors[:, np.argsort(-b_values)[:dim]])
    projected /= np.linalg.norm(projected[: len(x)], axis=1).mean()
    return unit(np.hstack([projected, np.full((len(e), 1), constant)]))


def auroc(score, unseen, validation):
    return np.mean(score[unseen][:, None] > score[validation][None, :])


def standardised(score, reference, train):
    return (score - score[train].mean()) / score[train].std() * reference[train].std()


def measure(e, labels, sets, shrinkages):
    train, validation, unseen = sets == "train", sets == "validation", sets == "unseen"
    order = np.concatenate([np.where(train)[0], np.where(~train)[0]])
    e, labels, sets = e[order], labels[order], sets[order]
    train, validation, unseen = sets == "train", sets == "validation", sets == "unseen"
    x, y = e[train], labels[train]
    out = {}
    mean, means, whiten = whitening(x, y, 3.0)
    z = head(x, y, e, whiten, mean, means)
    _, p = prototypes(z[train], labels[train])
    nearest = distances(z, p).min(1)
    atypicality = np.linalg.norm(e - x.mean(0), axis=1)
    out["distance"] = auroc(nearest, unseen, validation)
    out["atypicality"] = auroc(atypicality, unseen, validation)
    out["distance + atypicality"] = auroc(nearest + standardised(atypicality, nearest, train), unseen, validation)
    for s in shrinkages:
        mean, means, whiten = whitening(x, y, s)
        w = (e - mean) @ whiten
        wm = (means - mean) @ whiten
        q, _ = np.linalg.qr(wm.T)  # orthonormal basis of the species means' span
        residual = np.linalg.norm(w - (w @ q) @ q.T, axis=1)
        wd = np.sqrt(np.maximum((w**2).sum(1)[:, None] - 2 * w @ wm.T + (wm**2).sum(1)[None, :], 0))
        mahalanobis = wd.min(1)
        out[f"residual s={s}"] = auroc(residual, unseen, validation)
        out[f"mahalanobis s={s}"] = auroc(mahalanobis, unseen, validation)
        for weight in (1, 2):
            out[f"distance + {weight}x residual s={s}"] = auroc(
                nearest + weight * standardised(residual, nearest, train), unseen, validation)
        out[f"distance + atypicality + residual s={s}"] = auroc(
            nearest + standardised(atypicality, nearest, train) + standardised(residual, nearest, train),
            unseen, validation)
    return out, scores(z, p, e, x, y, train, atypicality)[validation | unseen], unseen[validation | unseen]


def scores(z, p, e, x, y, train, atypicality, temperature=0.064):
    """The logistic score's inputs, one row per photo."""
    d = np.sort(distances(z, p), 1)
    mean, means, whiten = whitening(x, y, 3.0)
    w, wm = (e - mean) @ whiten, (means - mean) @ whiten
    q, _ = np.linalg.qr(wm.T)
    residual = np.linalg.norm(w - (w @ q) @ q.T, axis=1)
    mahalanobis = np.sqrt(np.maximum((w**2).sum(1)[:, None] - 2 * w @ wm.T + (wm**2).sum(1)[None, :], 0)).min(1)
    logits = -(d**2) / temperature
    top = 1 / np.exp(logits - logits[:, :1]).sum(1)
    photos = np.sort(distances(z, z[train]), 1)
    return np.stack([d[:, 0], d[:, 1], d[:, 0] / d[:, 1], d[:, 4], atypicality, residual, mahalanobis, top,
                     photos[:, 0], photos[:, 2]], 1)


def logistic(x, t, l2=1.0, steps=2000, rate=0.5):
    """Weights (and bias, last) of an L2-regularised logistic regression, by gradient descent."""
    x = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ w))
        w -= rate * (x.T @ (p - t) + l2 * np.r_[w[:-1], 0]) / len(t)
    return w


def main(dirs):
    data = [load(d) for d in dirs]
    species = sorted(set(data[0][1]))
    rows, cases = [], {}
    for start in (0, 50, 100, 150, 185):
        held_out = set(species[start:start + 15])
        for seed, (e, labels, sets) in enumerate(data):
            sets = sets.copy()
            for s in set(labels[sets == "unseen"]) - held_out:  # the usual unseen become known
                idx = np.where(labels == s)[0]
                sets[idx] = "train"
                sets[idx[seed % len(idx)]] = "validation"
            for s in held_out:
                sets[labels == s] = "unseen"
            keep = np.isin(sets, ["train", "validation", "unseen"])
            row, features, is_unseen = measure(e[keep], labels[keep], sets[keep], (0.1, 0.3, 1.0, 3.0))
            rows.append(row)
            cases[(start, seed)] = (features, is_unseen)
            print(f"block {start}, split {seed}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in rows[-1].items()
                                                            if k.startswith("distance + atyp") or "1x residual s=0.3" in k),
                  file=sys.stderr)
    for row, ((start, seed), (features, is_unseen)) in zip(rows, cases.items()):
        others = [cases[k] for k in cases if k[0] != start and k[1] == seed]
        x = np.vstack([f for f, _ in others])
        mean, spread = x.mean(0), x.std(0)
        w = logistic((x - mean) / spread, np.concatenate([u for _, u in others]).astype(float))
        score = (features - mean) / spread @ w[:-1]
        row["logistic score trained on the other blocks"] = auroc(score, is_unseen, ~is_unseen)
    print(f"{len(data)} splits x 5 blocks of 15 held-out species; open-set AUROC, mean (sd over blocks x splits)")
    for k in rows[0]:
        v = np.array([r[k] for r in rows]) * 100
        print(f"| {k} | {v.mean():.1f} ({v.std():.1f}) |")


if __name__ == "__main__":
    main(sys.argv[1:])
