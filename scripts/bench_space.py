"""Space and speed of mstore next to plain copies, zstd -3, restic and borg, on deterministic retrain
sequences. Every tool ingests the same files in the same run; `cp` of the same files is the baseline.

    python scripts/bench_space.py                  # all scenarios + the speed section (~5-10 min)
    python scripts/bench_space.py --quick          # smaller models, fewer versions (smoke test)
    python scripts/bench_space.py --sweep          # also compare FastCDC average sizes on the joblib scenario
    python scripts/bench_space.py --markdown docs/benchmarks.md.new
    python scripts/bench_space.py --only onnx,gguf --speed-mb 0   # just the scenarios whose names match

Installs restic, borgbackup and zstd with apt-get when they are missing (the machine must allow it).
Scenarios: frozen backbone + new head (fp32, bf16), an adapter tensor inserted mid-file, warm-started
full retrain where every weight moves slightly (fp32, bf16), identical re-save, a scikit-learn
TF-IDF + logistic regression retrained on growing data and a TF-IDF + SGD (50 classes, 28.6 MB)
warm-started on growing data (both joblib), and fine-tunes of the last layers of an ONNX model
(initializers in the .onnx file) and of a GGUF model (F32 norms, F16 attention, Q8_0 MLP).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from mstore.formats.tensors import safetensors_bytes

ROOT = Path(__file__).resolve().parent.parent
MB = 1e6
Files = list[Path]


# ---------------------------------------------------------------- model generators


def bf16(a: np.ndarray) -> np.ndarray:
    return (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def backbone(rng: np.random.Generator, params: int, layers: int = 12, align: int = 1) -> dict[str, np.ndarray]:
    """A transformer-ish stack of weight matrices, biases and norms (fp32, N(0, 0.02)); `align`: the
    width is a multiple of it (GGUF's quantized blocks)."""
    out: dict[str, np.ndarray] = {}
    per = params // layers
    side = int(math.sqrt(per // 4))
    side -= side % align
    for i in range(layers):
        out[f"layers.{i}.attn.weight"] = rng.normal(0, 0.02, (side, side)).astype(np.float32)
        out[f"layers.{i}.mlp.weight"] = rng.normal(0, 0.02, (3 * side, side)).astype(np.float32)
        out[f"layers.{i}.norm.weight"] = np.ones(side, np.float32)
        out[f"layers.{i}.mlp.bias"] = rng.normal(0, 0.01, 3 * side).astype(np.float32)
    return out


def write(files_dir: Path, name: str, tensors: dict[str, np.ndarray], dtype: str) -> Path:
    path = files_dir / name
    conv = {k: ("BF16", bf16(a)) if dtype == "BF16" else ("F32", a) for k, a in tensors.items()}
    path.write_bytes(safetensors_bytes(conv))
    return path


def frozen_backbone(out: Path, params: int, versions: int, dtype: str) -> Files:
    rng = np.random.default_rng(1)
    body = backbone(rng, params)
    files = []
    for v in range(versions):
        head = {
            "classifier.weight": rng.normal(0, 0.02, (8, 768)).astype(np.float32),
            "classifier.bias": np.zeros(8, np.float32),
        }
        files.append(write(out, f"v{v}.safetensors", {**body, **head}, dtype))
    return files


def adapter_inserted(out: Path, params: int, versions: int) -> Files:
    rng = np.random.default_rng(2)
    body = backbone(rng, params)
    names = list(body)
    files = []
    for v in range(versions):
        model = dict(body)
        if v:  # an adapter inserted in the middle of the file, retrained each version
            mid = len(names) // 2
            adapter = {f"layers.6.adapter.{j}": rng.normal(0, 0.02, (64, 768)).astype(np.float32) for j in range(2)}
            model = {**{k: body[k] for k in names[:mid]}, **adapter, **{k: body[k] for k in names[mid:]}}
        files.append(write(out, f"v{v}.safetensors", model, "F32"))
    return files


def warm_start(out: Path, params: int, versions: int, dtype: str) -> Files:
    rng = np.random.default_rng(3)
    model = backbone(rng, params)
    files = []
    for v in range(versions):
        files.append(write(out, f"v{v}.safetensors", model, dtype))
        # one more epoch: every weight moves by ~0.1% (lr * grad), as continued training does
        model = {
            k: (a + rng.normal(0, 1e-3, a.shape).astype(np.float32) * np.abs(a)).astype(np.float32)
            for k, a in model.items()
        }
    return files


def identical(out: Path, params: int, versions: int) -> Files:
    first = write(out, "v0.safetensors", backbone(np.random.default_rng(4), params), "F32")
    files = [first]
    for v in range(1, versions):
        copy = out / f"v{v}.safetensors"
        shutil.copyfile(first, copy)
        files.append(copy)
    return files


def _fine_tune(rng: np.random.Generator, model: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One more epoch of a fine-tune: the last quarter of the layers and the head move by ~0.1%."""
    moving = ("layers.9.", "layers.10.", "layers.11.", "classifier.")
    return {
        k: (a + rng.normal(0, 1e-3, a.shape).astype(np.float32) * np.abs(a)).astype(np.float32)
        if k.startswith(moving)
        else a
        for k, a in model.items()
    }


def onnx_finetune(out: Path, params: int, versions: int) -> Files:
    """An ONNX model with its initializers in the .onnx file (raw_data), fine-tuned version after version."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    model = backbone(rng, params)
    side = model["layers.0.attn.weight"].shape[0]
    model["classifier.weight"] = rng.normal(0, 0.02, (8, side)).astype(np.float32)
    files = []
    for v in range(versions):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, side])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
        nodes = [helper.make_node("Gemm", ["x", "classifier.weight"], ["y"], transB=1)]
        inits = [numpy_helper.from_array(a, k) for k, a in model.items()]
        path = out / f"v{v}.onnx"
        onnx.save(helper.make_model(helper.make_graph(nodes, "bench", [x], [y], inits)), str(path))
        files.append(path)
        model = _fine_tune(rng, model)
    return files


def gguf_finetune(out: Path, params: int, versions: int) -> Files:
    """A llama.cpp-style GGUF: F32 norms and biases, F16 attention, Q8_0 MLP weights, a vocabulary in its
    metadata; each version fine-tunes the last layers and is quantized again."""
    import gguf
    from gguf.quants import quantize

    q8 = gguf.GGMLQuantizationType.Q8_0
    rng = np.random.default_rng(6)
    model = backbone(rng, params, align=32)
    model["classifier.weight"] = rng.normal(0, 0.02, (8, model["layers.0.attn.weight"].shape[0])).astype(np.float32)
    files = []
    for v in range(versions):
        path = out / f"v{v}.gguf"
        w = gguf.GGUFWriter(str(path), "llama")
        w.add_block_count(12)
        w.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(32000)])
        for k, a in model.items():
            if k.endswith("mlp.weight"):
                w.add_tensor(k, quantize(a, q8), raw_dtype=q8)
            elif k.endswith("attn.weight"):
                w.add_tensor(k, a.astype(np.float16))
            else:
                w.add_tensor(k, a)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        files.append(path)
        model = _fine_tune(rng, model)
    return files


def sklearn_joblib(out: Path, versions: int) -> Files:
    import joblib
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    sys.path.insert(0, str(ROOT / "scripts"))
    import random

    from demo import VOCAB, make_tickets

    files = []
    for v in range(versions):
        rows = make_tickets(300 + 300 * v, list(VOCAB), seed=0)
        rng = random.Random(
            0
        )  # order numbers and product codes: the vocabulary grows with the data, as in real tickets
        texts = [f"{t} order{rng.randrange(10**6)} sku-{rng.randrange(10**5)}" for t, _ in rows]
        model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=500, random_state=0))
        model.fit(texts, [c for _, c in rows])
        path = out / f"v{v}.joblib"
        joblib.dump(model, path)
        files.append(path)
    return files


def sklearn_sgd_joblib(out: Path, versions: int, classes: int = 50, per_class: int = 1300) -> Files:
    """The case of issue 13: TF-IDF (68,000 features) + SGDClassifier (log loss, 50 classes), warm-started
    on growing data, each version a 28.6 MB joblib whose `coef_` is 27.2 MB of dense float64.

    The tickets are generated: each class has its own words, every document mixes in words of other
    classes and common filler words, and a fifth of the labels are noise, so every weight is non-zero and
    distinct (as on real text). Every word appears in the first version, so the vocabulary (and with it
    every array's shape) stays the same while the data grows and each weight moves."""
    import joblib
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(5)
    shared = 68_000 - classes * per_class
    topic = [[f"t{c}x{j}" for j in range(per_class)] for c in range(classes)]
    filler = [f"f{j}" for j in range(shared)]
    zipf = 1.0 / np.arange(1, shared + 1)
    zipf /= zipf.sum()
    texts: list[str] = []
    labels: list[str] = []

    def more(n: int) -> None:
        for _ in range(n):
            c, k = len(texts) % classes, len(texts) // classes
            words = [topic[c][(k * 7 + i) % per_class] for i in range(7)]  # each word of the class early on
            others = zip(rng.integers(classes, size=12), rng.integers(per_class, size=12), strict=True)
            words += [topic[int(o)][int(j)] for o, j in others]
            words += [filler[(len(texts) * 2 + i) % shared] for i in range(2)]
            words += [filler[int(j)] for j in rng.choice(shared, size=10, p=zipf)]
            rng.shuffle(words)
            texts.append(" ".join(words))
            labels.append(f"class{c if rng.random() > 0.2 else int(rng.integers(classes)):02d}")

    model = make_pipeline(
        TfidfVectorizer(),
        SGDClassifier(loss="log_loss", alpha=1e-5, max_iter=3, tol=None, warm_start=True, random_state=0),
    )
    more(10_000)
    files = []
    for v in range(versions):
        if v:
            more(4_000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # max_iter=3 does not converge, on purpose (a nightly epoch)
            model.fit(texts, labels)
        path = out / f"v{v}.joblib"
        joblib.dump(model, path)
        files.append(path)
    return files


# ---------------------------------------------------------------- tools


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(cmd: list[str], **kw: object) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]


def ensure_tools() -> None:
    missing = [t for t in ("restic", "borg", "zstd") if shutil.which(t) is None]
    if missing:
        print(f"installing {missing} with apt-get ...", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", "restic", "borgbackup", "zstd"], env=env)


class Tool:
    name = ""

    def __init__(self, work: Path) -> None:
        self.work = work

    def setup(self) -> None: ...

    def ingest(self, path: Path, i: int) -> None: ...

    def restore(self, i: int, target: Path) -> None: ...

    def size(self) -> int:
        return tree_bytes(self.work)


class Copy(Tool):
    name = "cp"

    def ingest(self, path: Path, i: int) -> None:
        run(["cp", str(path), str(self.work / f"v{i}")])

    def restore(self, i: int, target: Path) -> None:
        run(["cp", str(self.work / f"v{i}"), str(target)])


class Zstd(Tool):
    name = "zstd -3"

    def ingest(self, path: Path, i: int) -> None:
        run(["zstd", "-3", "-q", "-f", str(path), "-o", str(self.work / f"v{i}.zst")])

    def restore(self, i: int, target: Path) -> None:
        run(["zstd", "-d", "-q", "-f", str(self.work / f"v{i}.zst"), "-o", str(target)])


class Restic(Tool):
    name = "restic"
    env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": "/tmp/restic-bench-cache"}

    def setup(self) -> None:
        run(["restic", "init", "--repo", str(self.work / "repo"), "--repository-version", "2"], env=self.env)

    def ingest(self, path: Path, i: int) -> None:
        run(
            ["restic", "--repo", str(self.work / "repo"), "backup", "--tag", f"v{i}", str(path)],
            env=self.env,
            cwd=path.parent,
        )

    def restore(self, i: int, target: Path) -> None:
        out = target.parent / "restic-out"
        run(
            ["restic", "--repo", str(self.work / "repo"), "restore", "latest", "--tag", f"v{i}", "--target", str(out)],
            env=self.env,
        )
        found = next(p for p in out.rglob("*") if p.is_file())
        os.replace(found, target)
        shutil.rmtree(out)


class Borg(Tool):
    name = "borg zstd,3"
    env = {**os.environ, "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes", "BORG_BASE_DIR": "/tmp/borg-bench-base"}

    def setup(self) -> None:
        run(["borg", "init", "-e", "none", str(self.work / "repo")], env=self.env)

    def ingest(self, path: Path, i: int) -> None:
        run(["borg", "create", "-C", "zstd,3", f"{self.work / 'repo'}::v{i}", path.name], env=self.env, cwd=path.parent)

    def restore(self, i: int, target: Path) -> None:
        out = target.parent / "borg-out"
        out.mkdir()
        run(["borg", "extract", f"{self.work / 'repo'}::v{i}"], env=self.env, cwd=out)
        found = next(p for p in out.rglob("*") if p.is_file())
        os.replace(found, target)
        shutil.rmtree(out)


class MStore(Tool):
    name = "mstore"

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mstore", "--store", str(self.work / "store"), "-q", *args]

    def ingest(self, path: Path, i: int) -> None:
        run(self.command("save", str(path), "-m", f"v{i}"))

    def restore(self, i: int, target: Path) -> None:
        run(self.command("checkout", f"latest~{self.versions - 1 - i}", "-o", str(target), "--force"))

    versions = 0


TOOLS: list[type[Tool]] = [Copy, Zstd, Restic, Borg, MStore]


def measure(files: Files, tool_cls: type[Tool], scratch: Path) -> dict[str, float]:
    work = scratch / tool_cls.name.replace(" ", "_").replace(",", "")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tool = tool_cls(work)
    if isinstance(tool, MStore):
        tool.versions = len(files)
    tool.setup()
    run(["sync"])
    started = time.perf_counter()
    for i, path in enumerate(files):
        tool.ingest(path, i)
    ingest_s = time.perf_counter() - started
    target = scratch / "restored"
    target.unlink(missing_ok=True)
    started = time.perf_counter()
    tool.restore(len(files) - 1, target)
    restore_s = time.perf_counter() - started
    assert target.read_bytes() == files[-1].read_bytes(), f"{tool.name} restored wrong bytes"
    target.unlink()
    size = tool.size()
    shutil.rmtree(work)
    raw = sum(p.stat().st_size for p in files)
    return {
        "bytes": size,
        "ratio": raw / size,
        "ingest_mb_s": raw / MB / ingest_s,
        "restore_mb_s": files[-1].stat().st_size / MB / restore_s,
    }


# ---------------------------------------------------------------- report


def table(name: str, files: Files, rows: dict[str, dict[str, float]]) -> list[str]:
    raw = sum(p.stat().st_size for p in files)
    lines = [
        f"### {name}: {len(files)} versions, {raw / MB:.1f} MB raw ({files[0].stat().st_size / MB:.1f} MB each)",
        "",
        "| tool | store bytes | ratio vs raw | ingest MB/s | restore MB/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for tool, r in rows.items():
        lines.append(
            f"| {tool} | {r['bytes']:,} | {r['ratio']:.2f}x | {r['ingest_mb_s']:.0f} | {r['restore_mb_s']:.0f} |"
        )
    best = min(rows["restic"]["bytes"], rows["borg zstd,3"]["bytes"])
    lines += [
        "",
        f"mstore / best of restic, borg: **{rows['mstore']['bytes'] / best:.3f}**; "
        f"mstore / zstd -3: {rows['mstore']['bytes'] / rows['zstd -3']['bytes']:.3f}",
        "",
    ]
    return lines


def scenarios(out: Path, quick: bool) -> Iterator[tuple[str, Callable[[], Files]]]:
    params = 2_000_000 if quick else 12_000_000  # fp32: 8 MB / 48 MB per version
    n = 4 if quick else 10

    def sub(name: str) -> Path:
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    yield "frozen backbone + new head, fp32", lambda: frozen_backbone(sub("frozen32"), params, n, "F32")
    yield "frozen backbone + new head, bf16", lambda: frozen_backbone(sub("frozen16"), params, n, "BF16")
    yield "adapter inserted mid-file, fp32", lambda: adapter_inserted(sub("adapter"), params, max(3, n // 2))
    yield "warm-started full retrain, fp32", lambda: warm_start(sub("warm32"), params, max(3, n // 2), "F32")
    yield "warm-started full retrain, bf16", lambda: warm_start(sub("warm16"), params, max(3, n // 2), "BF16")
    yield "identical re-save", lambda: identical(sub("identical"), params, max(3, n // 2))
    yield (
        "scikit-learn TF-IDF + logistic regression, growing data (joblib)",
        lambda: sklearn_joblib(sub("joblib"), max(3, n // 2) + 1),
    )
    yield (
        "scikit-learn TF-IDF (68k features) + SGD, 50 classes, warm-started on growing data (joblib)",
        lambda: sklearn_sgd_joblib(sub("sgd"), 3 if quick else 5),
    )
    yield (
        "ONNX fine-tune of the last layers, fp32 initializers",
        lambda: onnx_finetune(sub("onnx"), params, max(3, n // 2)),
    )
    yield "GGUF fine-tune of the last layers, F32/F16/Q8_0", lambda: gguf_finetune(sub("gguf"), params, max(3, n // 2))


def speed_section(scratch: Path, size_mb: int) -> list[str]:
    """Throughput of one large model: new content, a new head, checkout; peak RSS of the save."""
    rng = np.random.default_rng(7)
    params = size_mb * 1_000_000 // 4
    body = backbone(rng, params, layers=24)
    a = write(scratch, "big_v0.safetensors", body, "F32")
    head = {"classifier.weight": rng.normal(0, 0.02, (8, 768)).astype(np.float32)}
    b = write(scratch, "big_v1.safetensors", {**body, **head}, "F32")
    store = scratch / "speed-store"
    shutil.rmtree(store, ignore_errors=True)
    mstore = [sys.executable, "-m", "mstore", "--store", str(store), "-q"]

    def timed(cmd: list[str]) -> float:
        run(["sync"])
        started = time.perf_counter()
        run(cmd)
        return time.perf_counter() - started

    def rss(cmd: list[str]) -> int:
        out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], check=True, capture_output=True, text=True)
        return int(out.stderr.strip().splitlines()[-1]) * 1024

    size = a.stat().st_size / MB
    peak = rss([*mstore, "save", str(a), "-m", "first, for peak RSS"])
    out_path = scratch / "restored.safetensors"
    samples: dict[str, list[float]] = {k: [] for k in ("cp", "cp_sync", "new", "head", "checkout", "cp_back")}
    for i in range(5):  # interleaved, so page-cache and writeback swings hit every operation alike
        samples["cp"].append(timed(["cp", str(a), str(scratch / f"cp{i}")]))
        samples["cp_sync"].append(timed(["sh", "-c", f"cp {a} {scratch}/cps{i} && sync"]))
        shutil.rmtree(store)
        samples["new"].append(timed([*mstore, "save", str(a)]))
        samples["head"].append(timed([*mstore, "save", str(b)]))
        samples["checkout"].append(timed([*mstore, "checkout", "latest", "-o", str(out_path), "--force"]))
        samples["cp_back"].append(timed(["cp", str(b), str(scratch / f"back{i}")]))
        for p in scratch.glob("cp*"):
            p.unlink()
        for p in scratch.glob("back*"):
            p.unlink()
    med = {k: statistics.median(v) for k, v in samples.items()}
    cp, cp_sync, new_t, head_t, co_t, cp_back = (
        med["cp"],
        med["cp_sync"],
        med["new"],
        med["head"],
        med["checkout"],
        med["cp_back"],
    )
    assert out_path.read_bytes() == b.read_bytes()
    shutil.rmtree(store)
    rows = [
        ("cp of the same file (baseline)", cp, 1.0),
        ("cp + sync (a durable copy, for reference)", cp_sync, cp / cp_sync),
        ("mstore save, brand-new model", new_t, cp / new_t),
        ("mstore save, new head on a stored backbone", head_t, cp / head_t),
        ("mstore checkout", co_t, cp_back / co_t),
    ]
    lines = [
        f"### Speed: one {size:.0f} MB safetensors model (medians of 5 interleaved runs; `sync` before each)",
        "",
        "| operation | seconds | speed vs cp |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {t:.2f} | {ratio:.2f}x |" for name, t, ratio in rows]
    lines += ["", f"Peak RSS of `mstore save` of the {size:.0f} MB model: {peak / 2**20:.0f} MiB.", ""]
    return lines


def cdc_sweep(scratch: Path) -> list[str]:
    """Store bytes and save time of the joblib scenario for several FastCDC average sizes."""
    sys.path.insert(0, str(ROOT))
    from mstore import Repository

    (scratch / "sweep-models").mkdir(parents=True, exist_ok=True)
    files = sklearn_joblib(scratch / "sweep-models", 6)
    lines = [
        "### FastCDC average chunk size (joblib scenario, min = avg/4, max = avg*4)",
        "",
        "| average | store bytes | objects | save seconds |",
        "|---:|---:|---:|---:|",
    ]
    for avg in (64 << 10, 256 << 10, 1 << 20, 2 << 20, 4 << 20):
        root = scratch / f"sweep-{avg}"
        repo = Repository.init(root)
        repo.store.config["chunker"]["cdc"] = [max(avg // 4, 4096), avg, avg * 4]
        started = time.perf_counter()
        for path in files:
            repo.save(path)
        seconds = time.perf_counter() - started
        objects = len(list(repo.store.objects))
        lines.append(f"| {avg >> 10} KiB | {tree_bytes(root):,} | {objects} | {seconds:.2f} |")
        shutil.rmtree(root)
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="compare FastCDC average sizes on the joblib scenario")
    parser.add_argument("--speed-mb", type=int, default=1000, help="model size for the speed section (0: skip)")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    parser.add_argument("--skip-space", action="store_true", help="only the speed section")
    parser.add_argument("--only", default="", help="comma-separated words: run the scenarios whose names contain one")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "mstore-bench-space")
    args = parser.parse_args()
    ensure_tools()
    shutil.rmtree(args.scratch, ignore_errors=True)
    args.scratch.mkdir(parents=True)
    command = "python scripts/bench_space.py" + (" --quick" if args.quick else "")
    command += f" --only {args.only} --speed-mb {args.speed_mb}" if args.only else ""
    lines = [f"Machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; command: `{command}`", ""]
    ratios = []
    words = [w.lower() for w in args.only.split(",") if w]
    for name, make in [] if args.skip_space else scenarios(args.scratch / "models", args.quick):
        if words and not any(w in name.lower() for w in words):
            continue
        files = make()
        rows = {t.name: measure(files, t, args.scratch / "tools") for t in TOOLS}
        best = min(rows["restic"]["bytes"], rows["borg zstd,3"]["bytes"])
        ratios.append(rows["mstore"]["bytes"] / best)
        block = table(name, files, rows)
        print("\n".join(block), flush=True)
        lines += block
    if ratios:
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        summary = f"**Geometric mean of mstore / best of (restic, borg zstd,3) over the scenarios: {geo:.3f}**"
        print(summary)
        lines += [summary, ""]
    if args.sweep:
        block = cdc_sweep(args.scratch)
        print("\n".join(block), flush=True)
        lines += block
    if args.speed_mb:
        block = speed_section(args.scratch, args.speed_mb if not args.quick else 100)
        print("\n".join(block), flush=True)
        lines += block
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")
    shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
