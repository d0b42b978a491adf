#!/usr/bin/env python3
"""Means over splits of the numbers model selection looks at, from `sporeprint eval` reports.

Each RECIPE is a label and a glob of report files (one per split, e.g. `runs/cc-v2-s[0-4]/eval.json`:
a looser `cc-v2-s*` would also match a `--save`d report such as `cc-v2-s0-crops`, counting a split twice);
the table has one row per recipe and variant (`--variants`, default `plain`, the device's rule):
single-photo top-1 on known species (validation photos and their shifted variants), finds of
known species (2 views) and of new species enrolled from one photo (3 views, original and
shifted), 1- and 3-shot top-1, and the open-set AUROC and rejection of the device's rule
(distance + atypicality). Percentages, mean over the files, and the spread between them.

usage: compare_evals.py [--variants plain,flip] LABEL=GLOB...
"""
import argparse
import glob
import json
import statistics
import sys


def views(entries, n):
    return next((e["mean_embedding_top1"]["mean"] for e in entries if e["views"] == n), None)


def shots(entries, n):
    return next((e["prototype_top1"]["mean"] for e in entries if e["shots"] == n), None)


COLUMNS = {
    "top-1": lambda v: v["prototype_top1"],
    "shifted top-1": lambda v: v["shifted"]["prototype_top1"],
    "known find 2": lambda v: views(v.get("known_finds", []), 2),
    "shifted known find 2": lambda v: views(v["shifted"].get("known_finds", []), 2),
    "new 1 photo": lambda v: views(v["finds"], 1),
    "new find 3": lambda v: views(v["finds"], 3),
    "shifted new find 3": lambda v: views(v["shifted"]["finds"], 3),
    "1-shot top-1": lambda v: shots(v["kshot"], 1),
    "3-shot top-1": lambda v: shots(v["kshot"], 3),
    "AUROC": lambda v: v["open_set_with_atypicality"]["auroc"],
    "unseen rejected": lambda v: v["open_set_with_atypicality"]["unseen_rejected"],
}


def cell(values):
    values = [100 * x for x in values if x is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main():
    parser = argparse.ArgumentParser(description="Means over splits of sporeprint eval reports.")
    parser.add_argument("--variants", default="plain", help="comma-separated variants (default: plain)")
    parser.add_argument("recipes", nargs="+", metavar="LABEL=GLOB")
    args = parser.parse_args()
    variants = args.variants.split(",")
    print("| recipe | variant | splits | " + " | ".join(COLUMNS) + " |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    for recipe in args.recipes:
        label, pattern = recipe.split("=", 1)
        reports = [json.load(open(path)) for path in sorted(glob.glob(pattern))]
        if not reports:
            sys.exit(f"{pattern}: no reports")
        for name in variants:
            rows = [next(v for v in r["variants"] if v["variant"] == name) for r in reports]
            cells = [cell([column(v) for v in rows]) for column in COLUMNS.values()]
            print(f"| {label} | {name} | {len(rows)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
