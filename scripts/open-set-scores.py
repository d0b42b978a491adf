#!/usr/bin/env python3
"""Open-set scores tried after the fact on an evaluation's saved embeddings.

Usage: .venv/bin/python scripts/open-set-scores.py RUN/embeddings.json [--temperature T]

`sporeprint eval` saves the plain embeddings of every photo (train / validation / unseen). This
asks how well scores other than the device's (distance to the nearest prototype) tell the unseen
species' photos from the validation photos of known species: AUROC, and the share of unseen photos
rejected at the threshold keeping 95% of the known. Exploratory (numpy only): a score that wins
here is then measured in `sporeprint eval` (`open_set_scores`) before the device uses it.
"""
import argparse
import json

import numpy as np


def auroc(known, unseen):
    k, u = np.asarray(known)[None, :], np.asarray(unseen)[:, None]
    return float((u > k).mean() + 0.5 * (u == k).mean())


def rejected(known, unseen, keep=0.95):
    return float((np.asarray(unseen) > np.quantile(known, keep)).mean())


def distances(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def softmax_scores(d, t):
    z = -d / t
    m = z.max(1, keepdims=True)
    p = np.exp(z - m)
    return -(p / p.sum(1, keepdims=True)).max(1), -(m[:, 0] + np.log(p.sum(1))) * t


def logistic(x, y, steps=3000, l2=1e-2):
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        g = 1 / (1 + np.exp(-(z @ w + b))) - y
        w -= 0.1 * (z.T @ g / len(y) + l2 * w)
        b -= 0.1 * g.mean()
    return lambda x: ((x - mu) / sd) @ w + b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("embeddings")
    ap.add_argument("--temperature", type=float, action="append", help="softmax temperatures (default 0.02, 0.064, 0.2)")
    args = ap.parse_args()
    rows = json.load(open(args.embeddings))["rows"]

    def subset(name):
        r = [x for x in rows if x["set"] == name]
        return np.array([x["embedding"] for x in r]), np.array([x["label"] for x in r])

    train, train_labels = subset("train")
    validation, validation_labels = subset("validation")
    unseen, _ = subset("unseen")
    labels = sorted(set(train_labels))
    prototypes = np.stack([train[train_labels == l].mean(0) for l in labels])
    dk, du = distances(validation, prototypes), distances(unseen, prototypes)
    print(f"{len(validation)} known photos, {len(unseen)} unseen photos, {len(labels)} prototypes")

    def report(name, known, new):
        print(f"{name:44s} AUROC {auroc(known, new):.3f}  unseen rejected at 95% kept {rejected(known, new):.3f}")

    first = lambda d: np.sort(d, 1)[:, 0]
    report("nearest prototype (the device's distance)", first(dk), first(du))
    for t in args.temperature or [0.02, 0.064, 0.2]:
        (pk, ek), (pu, eu) = softmax_scores(dk, t), softmax_scores(du, t)
        report(f"max probability, T={t}", pk, pu)
        report(f"energy, T={t}", ek, eu)
    dkt, dut = distances(validation, train), distances(unseen, train)
    for k in [1, 3, 5]:
        mean_k = lambda d: np.sort(d, 1)[:, :k].mean(1)
        report(f"mean distance to the {k} nearest training photos", mean_k(dkt), mean_k(dut))
    ratio = lambda d: np.sort(d, 1)[:, 0] / np.sort(d, 1)[:, 1]
    report("nearest over second-nearest prototype", ratio(dk), ratio(du))

    # A score fitted on known photos asked as if their species were new (its prototype removed).
    features = lambda d: np.stack([np.sort(d, 1)[:, 0], np.sort(d, 1)[:, 1], ratio(d)], 1)
    pseudo = dk.copy()
    for i, label in enumerate(validation_labels):
        pseudo[i, labels.index(label)] = np.inf
    x = np.vstack([features(dk), features(pseudo)])
    y = np.r_[np.zeros(len(dk)), np.ones(len(dk))]
    score = logistic(x, y)
    report("logistic on (d1, d2, d1/d2), pseudo-unknowns", score(features(dk)), score(features(du)))


if __name__ == "__main__":
    main()
