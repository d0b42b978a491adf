#!/usr/bin/env python3
"""Checks the shipped recipe on species the choices behind it never looked at.

`sporeprint eval` holds out the last 15 species, and every split (`--seed`) holds out the same
ones, so the default's two settings chosen on those splits (`--constant-coordinate 0.25`, the
atypicality weight 1) might only suit those 15 species. This script holds out other blocks of 15
species instead and compares, on the untrained baseline's saved features (`sporeprint eval --data
DATA --seed S --save DIR`, one DIR per seed), the untrained features, the LDA head and the LDA
head with the constant coordinate, each with the open-set rule on distance + atypicality.

The LDA here is a numpy re-implementation of `--projection lda` on the unit features (the
trainer fits the raw ones), so its numbers differ from `sporeprint eval`'s by a point or so.

usage: other_unseen_blocks.py BASELINE_DIR...   (numpy; the project's .venv has it)
"""
import json
import sys

import numpy as np


def load(path):
    rows = sorted(json.load(open(f"{path}/embeddings.json"))["rows"], key=lambda r: r["path"])
    return (np.array([r["embedding"] for r in rows]), np.array([r["label"] for r in rows]),
            np.array([r["set"] for r in rows]))


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def prototypes(e, labels):
    species = sorted(set(labels))
    return np.array(species), unit(np.array([e[labels == s].mean(0) for s in species]))


def distances(x, p):
    return np.sqrt(np.maximum(2 - 2 * x @ p.T, 0))


def lda(e, labels, sets, dim, shrinkage=3.0):
    train = sets == "train"
    x, y = e[train], labels[train]
    mean = x.mean(0)
    within, means = np.zeros((x.shape[1],) * 2), []
    for s in sorted(set(y)):
        z = x[y == s] - mean
        within += (z - z.mean(0)).T @ (z - z.mean(0))
        means.append(z.mean(0))
    within /= len(y)
    means = np.array(means)
    within += shrinkage * np.trace(within) / within.shape[0] * np.eye(within.shape[0])
    values, vectors = np.linalg.eigh(within)
    whiten = vectors / np.sqrt(values)
    between = whiten.T @ (means.T @ means / len(means)) @ whiten
    b_values, b_vectors = np.linalg.eigh(between)
    projected = (e - mean) @ (whiten @ b_vectors[:, np.argsort(-b_values)[:dim]])
    return projected / np.linalg.norm(projected[train], axis=1).mean()


def measure(z, features, labels, sets, rng, draws=100):
    train, validation, unseen = sets == "train", sets == "validation", sets == "unseen"
    species, p = prototypes(z[train], labels[train])
    d_validation = distances(z[validation], p)
    out = {"top-1": np.mean(species[d_validation.argmin(1)] == labels[validation])}
    # Open set: nearest distance + atypicality, threshold keeping 95% of validation photos.
    nearest = distances(z, p).min(1)
    c = np.linalg.norm(features - features[train].mean(0), axis=1)
    score = nearest + (c - c[train].mean()) / c[train].std() * nearest[train].std()
    threshold = np.quantile(score[validation], 0.95)
    out["unseen rejected"] = np.mean(score[unseen] > threshold)
    out["AUROC"] = np.mean(score[unseen][:, None] > score[validation][None, :])
    zu, lu = z[unseen], labels[unseen]
    for k in (1, 3):
        top1, study = [], []
        for _ in range(draws):
            support, queries = [], []
            for s in sorted(set(lu)):
                idx = rng.permutation(np.where(lu == s)[0])
                support += list(idx[:k])
                queries += list(idx[k:])
            ps, pp = prototypes(zu[support], lu[support])
            all_species = np.concatenate([species, ps])
            nearest_species = all_species[distances(zu[queries], np.vstack([p, pp])).argmin(1)]
            top1.append(np.mean(nearest_species == lu[queries]))
            gallery_labels = np.concatenate([labels[train], lu[support]])
            nearest3 = np.argsort(distances(zu[queries], np.vstack([z[train], zu[support]])), 1)[:, :3]
            study.append(np.mean([lu[q] in gallery_labels[n] for q, n in zip(queries, nearest3)]))
        out[f"{k}-shot top-1"], out[f"{k}-shot study"] = np.mean(top1), np.mean(study)
    return out


def main(dirs):
    data = [load(d) for d in dirs]
    recipes = {
        "untrained": lambda e, l, s: e,
        "untrained, centred": lambda e, l, s: unit(e - e[s == "train"].mean(0)),
        "LDA": lambda e, l, s: unit(lda(e, l, s, 128)),
        "LDA + constant 0.25": lambda e, l, s: unit(np.hstack([lda(e, l, s, 127), np.full((len(e), 1), 0.25)])),
    }
    species = sorted(set(data[0][1]))
    results = {name: [] for name in recipes}
    for start in (0, 50, 100, 150):
        held_out = set(species[start:start + 15])
        for seed, (e, labels, sets) in enumerate(data):
            sets = sets.copy()
            for s in set(labels[sets == "unseen"]):  # the usual unseen species become known ones
                idx = np.where(labels == s)[0]
                sets[idx] = "train"
                sets[idx[seed % len(idx)]] = "validation"
            for s in held_out:
                sets[labels == s] = "unseen"
            for name, recipe in recipes.items():
                rng = np.random.default_rng(seed)
                results[name].append(measure(recipe(e, labels, sets), e, labels, sets, rng))
    keys = list(results["LDA"][0])
    print(f"{len(data)} splits x 4 blocks of 15 held-out species (0-14, 50-64, 100-114, 150-164); mean %")
    print("| recipe | " + " | ".join(keys) + " |\n|---" * 1 + "|---" * len(keys) + "|")
    for name, rows in results.items():
        print(f"| {name} | " + " | ".join(f"{100 * np.mean([r[k] for r in rows]):.1f}" for k in keys) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
