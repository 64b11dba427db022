"""``python -m train.deep.ensemble MEMBER MEMBER ... --out DIR``: Keras models served as one.

Copies trained model folders (``python -m train --preset cnn|rcnn|rnn --out
...``) into one ensemble folder (:mod:`sentiment.models.deep.ensemble`), checks
that they read reviews alike (one vocabulary) and were trained beside the same
holdout, scores the ensemble on the evaluation sets of the CSV they were trained
from, and writes the manifest last. Nothing is trained again: an ensemble costs
its members' training, and at prediction time each member's work in turn.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from sentiment.files import atomic_write, sha256_bytes
from sentiment.models import ENSEMBLE, KERAS
from train.deep.train import accuracies
from train.presets import OFFICIAL_TEST, SHORT_TEST, TUTORIAL_5K

ROOT = Path(__file__).resolve().parent.parent.parent
HOLDOUT = "holdout.csv.gz"
# The ensemble is scored on the sets its first member was scored on (the presets' own).
EVALUATION_SETS = {es.name: es for es in (OFFICIAL_TEST, TUTORIAL_5K, SHORT_TEST)}


class EnsembleError(ValueError):
    """Members that cannot make an ensemble (a one-line message for the command line)."""


def member_manifests(members: list[Path]) -> dict[str, dict[str, Any]]:
    """Each member's manifest by its preset name; EnsembleError if they do not fit together."""
    manifests: dict[str, dict[str, Any]] = {}
    for folder in members:
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise EnsembleError(f"{folder}: no readable manifest.json ({exc})") from exc
        if manifest.get("kind") != KERAS:
            raise EnsembleError(f"{folder}: not a Keras model folder (kind "
                                f"{manifest.get('kind', 'linear')!r})")
        name = str(manifest.get("preset"))
        if name in manifests:
            raise EnsembleError(f"two members of preset {name!r}: give each preset once")
        manifests[name] = manifest
    if len(manifests) < 2:
        raise EnsembleError("an ensemble needs at least two members")
    holdouts = {m["files"].get(HOLDOUT) for m in manifests.values()}
    if len(holdouts) != 1 or None in holdouts:
        raise EnsembleError("the members were trained beside different holdouts (another "
                            "CSV, seed or holdout size): the guard needs one")
    return manifests


def compose(members: list[Path], out: Path, csv_path: Path | None) -> dict[str, Any]:
    """The ensemble folder ``out`` (replaced whole, never left half written); its manifest."""
    manifests = member_manifests(members)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        manifest = _write(members, manifests, staging, csv_path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return manifest


def _write(members: list[Path], manifests: dict[str, dict[str, Any]], staging: Path,
           csv_path: Path | None) -> dict[str, Any]:
    from sentiment.models.deep.ensemble import EnsembleModel  # Keras only when composing
    from sentiment.models.deep.served import DeepModel

    for folder, name in zip(members, manifests, strict=True):
        shutil.copytree(folder, staging / name)
    shutil.copyfile(members[0] / HOLDOUT, staging / HOLDOUT)
    files = {f"{name}/manifest.json": sha256_bytes((staging / name / "manifest.json").read_bytes())
             for name in manifests}
    files[HOLDOUT] = sha256_bytes((staging / HOLDOUT).read_bytes())
    model = EnsembleModel({name: DeepModel.load(staging / name) for name in manifests}, {})
    accuracy = {}
    if csv_path is not None:
        first = next(iter(manifests.values()))
        sets = [EVALUATION_SETS[name] for name in first.get("accuracy", {})
                if name in EVALUATION_SETS]
        accuracy = accuracies(csv_path, sets,
                              lambda texts: model.probabilities(model.transform(texts)))
    manifest = {
        "kind": ENSEMBLE,
        "preset": "+".join(manifests),
        "description": "the mean of the probabilities of " + "; ".join(
            f"{name} ({m.get('description', '')})" for name, m in manifests.items()),
        "members": list(manifests),
        "files": files,
        "online": {name: m.get("online") for name, m in manifests.items()},
        "accuracy": {k: v["accuracy"] for k, v in accuracy.items()},
        "sizes": {k: v["n"] for k, v in accuracy.items()},
        "size_bytes": sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    atomic_write(staging / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.deep.ensemble",
                                     description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("members", nargs="+", type=Path, help="trained Keras model folders")
    parser.add_argument("--out", type=Path, required=True, help="the ensemble's folder")
    parser.add_argument("--csv", type=Path, default=ROOT / "data" / "movie_data.csv",
                        help="the CSV the members were trained from, for the ensemble's "
                             "accuracy (default: data/movie_data.csv; --no-eval skips it)")
    parser.add_argument("--no-eval", action="store_true", help="do not score the ensemble")
    args = parser.parse_args(argv)
    csv_path = None if args.no_eval else args.csv
    if csv_path is not None and not csv_path.is_file():
        parser.error(f"--csv {csv_path} does not exist (give the training CSV, or --no-eval)")
    try:
        manifest = compose(args.members, args.out, csv_path)
    except (EnsembleError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"ensemble {manifest['preset']} written to {args.out}")
    for name, value in manifest["accuracy"].items():
        print(f"  accuracy {name:<12} {value:.4f}  ({manifest['sizes'][name]:,} reviews)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
