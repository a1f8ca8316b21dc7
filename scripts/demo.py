"""mstore demo: a nightly text classifier retrained on growing data, versioned with mstore.

Each round trains a real scikit-learn TF-IDF + logistic-regression ticket classifier, saves it with
`ModelVersioning.save_model_version` (the seed's API), then shows what `mstore log`, `mstore diff`,
`mstore du`, `mstore fsck` and `mstore checkout` tell you, and shares the store with a teammate through
a remote (`push`, `clone`). The ticket texts are generated deterministically here
(the machine has no network to download a corpus), so every run tells the same story (the version IDs,
times and model hashes differ: a model file records when it was trained).

Run:  python scripts/demo.py [--out DIR]      (default DIR: ./demo, wiped first)
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, classification_report
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from mstore import ModelVersioning

VOCAB = {
    "billing": ["invoice", "charged", "refund", "payment", "card", "subscription", "price", "bill", "twice"],
    "technical": ["error", "crash", "login", "bug", "slow", "timeout", "install", "update", "screen"],
    "account": ["password", "email", "username", "profile", "delete", "locked", "verify", "settings"],
    "shipping": ["delivery", "package", "tracking", "courier", "address", "late", "arrived", "shipment"],
    "returns": ["return", "exchange", "label", "damaged", "wrong", "size", "warehouse", "replacement"],
}
FILLER = [
    *("please", "help", "my", "the", "is", "not", "with", "since", "yesterday"),
    *("again", "hello", "thanks", "order", "app", "you", "can", "why"),
]
# round -> (tickets per category, categories, note): data grows and a new category arrives in round 3;
# round 4 is the nightly job on a night without new data: the same model, so it costs no new bytes
ROUNDS = [
    (40, ["billing", "technical", "account", "shipping"], ""),
    (80, ["billing", "technical", "account", "shipping"], ""),
    (120, ["billing", "technical", "account", "shipping", "returns"], " (a new category: returns)"),
    (120, ["billing", "technical", "account", "shipping", "returns"], " (no new data tonight: the same model)"),
]


def make_tickets(per_category: int, categories: list[str], seed: int = 0) -> list[tuple[str, str]]:
    """Deterministic noisy support tickets; a prefix of a larger set is the same as a smaller set."""
    rows = []
    for category in categories:
        rng = random.Random(f"{seed}-{category}")
        for _ in range(per_category):
            words = [rng.choice(VOCAB[category])] + rng.sample(FILLER, 5)
            for _ in range(2):  # many tickets mention other topics too, which makes the task hard
                if rng.random() < 0.3:
                    other = rng.choice([c for c in VOCAB if c != category])
                    words.append(rng.choice(VOCAB[other]))
            rng.shuffle(words)
            rows.append((" ".join(words), category))
    return rows


def train(rows: list[tuple[str, str]], out: Path) -> tuple[dict[str, object], int]:
    texts = [text for text, _ in rows]
    labels = [label for _, label in rows]
    x_train, x_test, y_train, y_test = train_test_split(texts, labels, test_size=0.25, random_state=0, stratify=labels)
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=1000, random_state=0))
    model.fit(x_train, y_train)
    predicted = model.predict(x_test)
    report = classification_report(y_test, predicted, output_dict=True, zero_division=0)
    metrics = {
        "accuracy": round(float(accuracy_score(y_test, predicted)), 4),
        "macro_avg_f1": round(report["macro avg"]["f1-score"], 4),
        "per_class_f1": {c: round(report[c]["f1-score"], 4) for c in sorted(set(labels))},
    }
    joblib.dump(model, out)
    return metrics, len(x_train)


def mstore(store: Path, *args: str, show_store: bool = False) -> None:
    shown = ["mstore", *(["--store", str(store)] if show_store else []), *args]
    print(f"\n$ {' '.join(shown)}", flush=True)
    subprocess.run([sys.executable, "-m", "mstore", "--store", str(store), *args], check=args[0] != "fsck")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo"), help="work directory (wiped first)")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    data_dir, store = args.out / "data", args.out / "models"
    data_dir.mkdir(parents=True)
    versioning = ModelVersioning(base_dir=store)

    raw_bytes = 0
    for number, (per_category, categories, note) in enumerate(ROUNDS, start=1):
        rows = make_tickets(per_category, categories)
        training_file = data_dir / f"tickets_{len(rows)}.csv"
        with open(training_file, "w", newline="") as f:
            csv.writer(f).writerows([("text", "category"), *rows])
        model_path = args.out / "model.joblib"
        metrics, num_samples = train(rows, model_path)
        raw_bytes += model_path.stat().st_size
        meta = versioning.save_model_version(
            model_path,
            {
                "training_file": str(training_file),
                "metrics": metrics,
                "num_samples": num_samples,
                "categories": categories,
                "message": f"round {number}: {len(rows)} tickets",
            },
        )
        info = meta["mstore"]
        print(
            f"round {number}: saved {meta['timestamp']}  accuracy={metrics['accuracy']}  "
            f"model {info['size']:,} B, new in store {info['new_bytes']:,} B{note}"
        )

    mstore(store, "log", "--oneline")
    mstore(store, "log", "-n", "1")
    mstore(store, "diff", "latest~3", "latest~1")
    mstore(store, "diff", "latest~1", "latest", "--stat")
    mstore(store, "tag", "prod", "latest")
    mstore(store, "du")
    mstore(store, "fsck")
    restored = args.out / "restored.joblib"
    mstore(store, "checkout", "prod", "-o", str(restored))

    model = joblib.load(restored)  # the demo trusts its own model; mstore itself never unpickles
    ticket = "I was charged twice on my invoice, please refund"
    print(f"\nrestored model predicts {str(model.predict([ticket])[0])!r} for {ticket!r}")
    stored = sum(p.stat().st_size for p in (store / "objects").rglob("*") if p.is_file())
    print(f"\n{len(ROUNDS)} versions: {raw_bytes:,} B as plain copies, {stored:,} B in mstore's objects/")

    # Sharing with a teammate: a directory remote here; `s3://bucket/prefix` works the same (docs/remote.md).
    shared, teammate = args.out / "shared", args.out / "teammate"
    mstore(store, "remote", "add", "team", str(shared))
    mstore(store, "push", "team")
    mstore(teammate, "clone", str(shared), str(teammate))
    mstore(teammate, "log", "--oneline", "-n", "2", show_store=True)


if __name__ == "__main__":
    main()
