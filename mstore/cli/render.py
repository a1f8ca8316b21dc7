"""Human-readable text for log, show, diff and du. Pure functions from result dicts to lines, so the
CLI stays thin and the text is testable; stored strings always pass through `safe`."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..diff import environment as _environment
from ..diff.compare import flatten_metrics, lineage_of, pickle_claim_of, pickle_verdict_of, unsafe_globals_of
from ..diff.grouping import GROUP_MIN, group_names
from ..diff.lineage import change_lines, code_text, data_text
from ..diff.query import fields as query_fields
from ..humanize import format_bytes, format_duration, safe
from ..store.metadata import is_number
from ..store.versions import parse_id_time

Style = Callable[[str, str], str]  # (text, role) -> text; roles: id, deco, good, bad, dim, head


def plain(text: str, role: str) -> str:
    return text


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if is_number(value) else safe(value)


def _json(value: Any) -> str:
    return safe(json.dumps(value, ensure_ascii=False))


def _metric_text(meta: dict[str, Any], names: list[str]) -> str:
    flat = flatten_metrics(meta.get("metrics") or {})
    return "  ".join(f"{safe(n)}={_num(flat.get(n))}" for n in names if n in flat)


def _param_value(value: Any) -> str:
    if is_number(value):
        return _num(value)
    return safe(value) if isinstance(value, str) else _short(value)


def _param_text(meta: dict[str, Any]) -> str:
    """`C=0.3  kernel=rbf` (nested params as dotted names)."""
    params = meta.get("params")
    flat = flatten_metrics(params) if isinstance(params, dict) else {}
    return "  ".join(f"{safe(n)}={_param_value(v)}" for n, v in flat.items())


def _decorations(meta: dict[str, Any], latest: str | None) -> str:
    labels = (["latest"] if meta["timestamp"] == latest else []) + [f"tag: {t}" for t in meta.get("tags", [])]
    return f"({', '.join(safe(lbl) for lbl in labels)})" if labels else ""


def _age(version_id: str, now: datetime) -> str:
    return f"{format_duration((now - parse_id_time(version_id)).total_seconds())} ago"


def lineage_text(meta: dict[str, Any]) -> str:
    """`data train.csv (1a2b3c4d5e6f), code 1a2b3c4-dirty`; empty when nothing was recorded."""
    lineage = lineage_of(meta)
    parts = []
    if "training_file" in lineage:
        parts.append(f"data {data_text(lineage['training_file'])}")
    if "git" in lineage:
        parts.append(f"code {code_text(lineage['git'])}")
    return ", ".join(parts)


def unsafe_text(names: list[str], limit: int = 5) -> str:
    """`os.system, subprocess.Popen` (escaped; `and N more` past `limit`)."""
    shown = ", ".join(safe(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def unsafe_warnings(meta: dict[str, Any]) -> list[str]:
    """The lines `save` prints on stderr for a model with unsafe or unreadable pickles."""
    block = meta.get("mstore") or {}
    lines = []
    per_file = block.get("pickle_globals") or {}
    for rel, names in per_file.items() if isinstance(per_file, dict) else []:
        bad = [n for n in names if isinstance(n, str) and n in set(unsafe_globals_of(meta))]
        if bad:
            lines.append(
                f"warning: loading {safe(rel)} would import {unsafe_text(bad)}, outside the known-safe set "
                "(load it only if you trust where it came from)"
            )
    incomplete = block.get("pickle_incomplete") or {}
    for rel, why in incomplete.items() if isinstance(incomplete, dict) else []:
        lines.append(f"warning: pickle {safe(rel)} could not be read to its end ({safe(why)}); its globals are unknown")
    return lines


def _new_bytes(meta: dict[str, Any]) -> int | None:
    value = (meta.get("mstore") or {}).get("new_bytes")
    return value if isinstance(value, int) else None


def log_lines(
    entries: list[dict[str, Any]],
    metrics: list[str],
    latest: str | None,
    now: datetime,
    *,
    oneline: bool,
    style: Style = plain,
) -> list[str]:
    lines: list[str] = []
    rows: list[list[tuple[str, str]]] = []
    for meta in entries:
        vid = meta["timestamp"]
        short = str(meta.get("model_hash", ""))[:12]
        deco = _decorations(meta, latest)
        new = _new_bytes(meta)
        stored = "" if new is None else f"+{format_bytes(new)}"
        message = safe(meta.get("message", ""))
        if oneline:
            rows.append(_oneline_cells(meta, metrics, deco, stored, message, now))
            continue
        lines.append(f"{style('version ' + vid, 'id')}" + (f"  {style(deco, 'deco')}" if deco else ""))
        lines.append(f"Age:      {_age(vid, now)} ({parse_id_time(vid):%Y-%m-%d %H:%M:%S} UTC)")
        lines.append(f"Hash:     {short}")
        metric_text = _metric_text(meta, metrics)
        if metric_text:
            lines.append(f"Metrics:  {metric_text}")
        param_text = _param_text(meta)
        if param_text:
            lines.append(f"Params:   {param_text}")
        size = (meta.get("mstore") or {}).get("size")
        if new is not None and isinstance(size, int):
            lines.append(f"Stored:   +{format_bytes(new)} in new objects (model {format_bytes(size)})")
        lineage = lineage_text(meta)
        if lineage:
            lines.append(f"Lineage:  {lineage}")
        unsafe = unsafe_globals_of(meta)
        verdict, why = pickle_verdict_of(meta)
        if unsafe:
            lines.append(style(f"Unsafe:   loading it imports {unsafe_text(unsafe)}{pickle_claim_of(meta)}", "bad"))
        elif verdict == "unknown":
            lines.append(style(f"Unsafe?:  {safe(why)}{pickle_claim_of(meta)}", "bad"))
        if message:
            lines.append(f"Message:  {message}")
        lines.append("")
    if oneline:
        return aligned(rows, style)
    return lines[:-1] if lines else lines


def _oneline_cells(
    meta: dict[str, Any], metrics: list[str], deco: str, stored: str, message: str, now: datetime
) -> list[tuple[str, str]]:
    """One `log --oneline` row as (text, role) cells: id, hash, age, one cell per metric, params, stored
    bytes, decorations (latest, tags), the pickle mark and the message (the last, never padded)."""
    vid = meta["timestamp"]
    flat = flatten_metrics(meta.get("metrics") or {})
    cells = [(vid, "id"), (str(meta.get("model_hash", ""))[:12], ""), (_age(vid, now), "dim")]
    cells += [(f"{safe(n)}={_num(flat[n])}" if n in flat else "", "") for n in metrics]
    verdict = pickle_verdict_of(meta)[0]
    mark = {"unsafe": "UNSAFE", "unknown": "UNSAFE?"}.get(verdict or "", "")
    cells += [(_param_text(meta), ""), (stored, ""), (deco, "deco"), (mark, "bad"), (message, "")]
    return cells


def aligned(rows: list[list[tuple[str, str]]], style: Style = plain) -> list[str]:
    """Rows of (text, role) cells as lines whose columns line up: each column as wide as its widest cell
    (padding added outside the styling, so colours do not count), columns empty in every row left out,
    two spaces between columns and no trailing blanks."""
    if not rows:
        return []
    count = max(len(r) for r in rows)
    widths = [max((len(r[i][0]) for r in rows if i < len(r)), default=0) for i in range(count)]
    keep = [i for i in range(count) if widths[i]]
    lines = []
    for row in rows:
        out = []
        for n, i in enumerate(keep):
            text, role = row[i] if i < len(row) else ("", "")
            pad = "" if n == len(keep) - 1 else " " * (widths[i] - len(text))
            out.append((style(text, role) if text and role else text) + pad)
        lines.append("  ".join(out).rstrip())
    return lines


_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
FORMAT_FIELDS = ("id", "hash", "model_hash", "date", "age", "tags", "message", "parent")


def format_names(template: str) -> list[str]:
    """The `{name}`s of a `log --format` template."""
    return _PLACEHOLDER.findall(template)


def format_values(meta: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What `log --format` can name for one version: id, hash, date, age, tags, message, parent, every
    metric and param (`{accuracy}`, `{metrics.accuracy}`, `{params.C}`) and top-level field."""
    vid = meta["timestamp"]
    raw = meta.get("mstore")
    block: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return {
        **query_fields(meta),
        "id": vid,
        "hash": str(meta.get("model_hash", ""))[:12],
        "model_hash": meta.get("model_hash", ""),
        "date": f"{parse_id_time(vid):%Y-%m-%dT%H:%M:%SZ}",
        "age": _age(vid, now),
        "tags": ",".join(str(t) for t in meta.get("tags", [])),
        "message": meta.get("message", ""),
        "parent": block.get("parent") or "",
    }


def format_line(template: str, meta: dict[str, Any], now: datetime) -> str:
    """`log --format '{id} {metrics.accuracy}'`: each `{name}` replaced, `-` where the version lacks it;
    numbers in full (a script parses them), stored text escaped."""
    values = format_values(meta, now)

    def one(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value is None:
            return "-"
        if isinstance(value, (dict, list)):
            return _json(value)
        return str(value) if is_number(value) or isinstance(value, bool) else safe(value)

    return _PLACEHOLDER.sub(one, template)


def save_summary(meta: dict[str, Any]) -> str:
    """`3 file(s), 40.0 MiB, model_hash ab12…; new 1.2 MiB stored in 0.4 MiB (3.0x), reused 38.8 MiB, 12 deltas`."""
    info = meta["mstore"]
    content, stored = info.get("new_content_bytes", info["new_bytes"]), info["new_bytes"]
    ratio = f" ({content / stored:.1f}x)" if stored and content else ""
    deltas = f", {info['delta_objects']} delta(s) against {info['parent']}" if info.get("delta_objects") else ""
    reused = info.get("reused_bytes", max(info["size"] - content, 0))
    return (
        f"  {info['files']} file(s), {format_bytes(info['size'])}, model_hash {meta['model_hash'][:12]}; "
        f"new {format_bytes(content)} stored in {format_bytes(stored)}{ratio}, reused {format_bytes(reused)}{deltas}"
    )


def show_lines(shown: dict[str, Any], style: Style = plain) -> list[str]:
    meta = shown["metadata"]
    lines = [style(f"version {meta['timestamp']}", "id")]
    for key, value in meta.items():
        if key in ("timestamp", "mstore"):
            continue
        text = _json(value) if isinstance(value, (dict, list)) else safe(value)
        lines.append(f"  {safe(key)}: {text}")
    lineage = lineage_of(meta)
    if "training_file" in lineage:
        data = lineage["training_file"]
        size = data.get("size")
        size_text = f", {format_bytes(size)}" if isinstance(size, int) else ""
        lines.append(f"  trained on: {safe(data.get('path', ''))} (blake3 {safe(data.get('blake3', ''))}{size_text})")
    if "git" in lineage:
        git = lineage["git"]
        dirty = " (with uncommitted changes)" if git.get("dirty") else ""
        lines.append(f"  code: git commit {safe(git.get('commit', ''))}{dirty}")
    saved_by = _environment.saved_by_of(meta)
    if saved_by:
        lines.append(f"  saved by: {safe(saved_by)}")
    environment = _environment.environment_text(_environment.environment_of(meta))
    if environment:
        lines.append(f"  environment: {environment}")
    unsafe = unsafe_globals_of(meta)
    verdict, why = pickle_verdict_of(meta)
    claim = pickle_claim_of(meta)
    if unsafe:
        text = f"  UNSAFE: loading it imports {unsafe_text(unsafe, 20)} (outside the known-safe set)"
        lines.append(style(text + claim, "bad"))
    elif verdict == "unknown":
        lines.append(style(f"  UNSAFE (unknown): {safe(why)}{claim}", "bad"))
    block = meta.get("mstore")
    per_file = block.get("pickle_globals") if isinstance(block, dict) else None
    if isinstance(per_file, dict):
        for rel, names in per_file.items():
            count = len(names) if isinstance(names, list) else 0
            tail = ", all known-safe" if verdict == "safe" else ""
            lines.append(f"  pickle {safe(rel)}: imports {count} global(s){tail}")
    lines.append(f"files ({format_bytes(shown['size'])}):")
    for f in shown["files"]:
        lines.append(f"  {format_bytes(f['size']):>10}  {safe(f['path'])}{'  (executable)' if f['executable'] else ''}")
    if shown["parent"]:
        share = shown["shared_with_parent_bytes"] / shown["size"] if shown["size"] else 0.0
        lines.append(
            f"shared with parent {shown['parent']}: {format_bytes(shown['shared_with_parent_bytes'])} ({share:.0%})"
        )
    elif shown.get("parent_removed"):
        lines.append(f"parent {safe(shown['parent_removed'])} (removed)")
    return lines


def tensor_lines(listed: dict[str, Any]) -> list[str]:
    """`mstore show --tensors`: each tensor file, then its tensors (name, dtype, shape, size)."""
    if not listed["files"]:
        return [f"version {listed['version']} has no tensor file (safetensors, npz, ONNX, GGUF)"]
    lines = []
    for f in listed["files"]:
        total = sum(t["size"] for t in f["tensors"])
        lines.append(f"{safe(f['path'])}: {len(f['tensors'])} tensor(s), {format_bytes(total)}")
        width = max((len(t["name"]) for t in f["tensors"]), default=0)
        for t in f["tensors"]:
            shape = "[" + ", ".join(str(d) for d in t["shape"]) + "]"
            lines.append(
                f"  {safe(t['name']).ljust(width)}  {safe(t['dtype']):<7} {shape:<18} {format_bytes(t['size']):>10}"
            )
    return lines


def _metric_rows(metrics: dict[str, dict[str, Any]], style: Style) -> list[str]:
    if not metrics:
        return []
    width = max(len(safe(n)) for n in metrics)
    lines = [style(f"  {'metric':<{width}}  {'old':>10}  {'new':>10}  {'delta':>10}  {'change':>8}", "head")]
    for name, row in metrics.items():
        delta = "" if row["delta"] is None else f"{row['delta']:+.4g}"
        rel = "" if row["relative"] is None else f"{row['relative']:+.1%}"
        line = (
            f"  {safe(name):<{width}}  {_num(row['old']):>10}  {_num(row['new']):>10}  {delta:>10}  {rel:>8}".rstrip()
        )
        role = {True: "good", False: "bad"}.get(row["improved"], "")
        lines.append(style(line, role) if role else line)
    return lines


def _tensor_lines(t: dict[str, Any], style: Style, full: bool = False) -> list[str]:
    """Added, removed and changed tensors in natural order; without `full`, long runs sharing a prefix
    fold into one line with a count (`+200 tensors in estimators_[0..49]`)."""
    lines: list[str] = []
    for mark, role, rows in (("+", "good", t["added"]), ("-", "bad", t["removed"])):
        by_name = {row["name"]: row for row in rows}
        for g in group_names(list(by_name), 0 if full else GROUP_MIN):
            if g.count > 1:
                lines.append(style(f"      {mark}{g.count} tensors in {safe(g.label)}", role))
            else:
                row = by_name[g.label]
                lines.append(style(f"      {mark} {safe(row['name'])}  {row['dtype']} {row['shape']}", role))
    changed = {row["name"]: row for row in t["changed"]}
    for g in group_names(list(changed), 0 if full else GROUP_MIN):
        if g.count > 1:
            lines.append(f"      ~{g.count} tensors changed in {safe(g.label)}")
            continue
        row = changed[g.label]
        what = []
        if row["dtype_before"] != row["dtype_after"]:
            what.append(f"dtype {row['dtype_before']} -> {row['dtype_after']}")
        if row["shape_before"] != row["shape_after"]:
            what.append(f"shape {row['shape_before']} -> {row['shape_after']}")
        if row["changed_fraction"] is not None:
            what.append(f"{row['changed_fraction']:.1%} of {row.get('changed_unit', 'elements')} changed")
        if row["rel_l2"] is not None:
            what.append(f"rel L2 {row['rel_l2']:.3g}")
        lines.append(f"      ~ {safe(row['name'])}  {', '.join(what)}")
    lines.append(f"      {t['unchanged']} tensor(s) unchanged")
    return lines


MAX_KEY_LINES = 20
MAX_VALUE_CHARS = 60


def _short(value: Any) -> str:
    text = _json(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def _key_lines(keys: dict[str, Any], style: Style) -> list[str]:
    """`num_labels: 3 -> 4` per changed config key (the first MAX_KEY_LINES; --json has them all)."""
    lines = [f"      {safe(k)}: {_short(c['old'])} -> {_short(c['new'])}" for k, c in keys["changed"].items()]
    lines += [style(f"      + {safe(k)}: {_short(v)}", "good") for k, v in keys["added"].items()]
    lines += [style(f"      - {safe(k)}: {_short(v)}", "bad") for k, v in keys["removed"].items()]
    if len(lines) > MAX_KEY_LINES:
        lines = [*lines[:MAX_KEY_LINES], f"      ... and {len(lines) - MAX_KEY_LINES} more key(s) (--json lists all)"]
    return lines


def diff_lines(d: dict[str, Any], *, stat: bool = False, style: Style = plain, full: bool = False) -> list[str]:
    same = "same model bytes" if d["same_model"] else "model changed"
    h1, h2 = (str(d["model_hash"][k])[:12] for k in ("version1", "version2"))
    lines = [
        style(f"{d['version1']} -> {d['version2']}", "id") + f"  ({format_duration(d['time_diff'])} apart)",
        f"model: {same} ({h1} -> {h2})",
    ]
    files, md, cats = d["files"], d["metadata"], d["categories"]
    unsafe = d.get("unsafe_globals") or {}
    for key in ("version1", "version2"):
        names = unsafe.get(key) or []
        if names:
            lines.append(style(f"! {d[key]} is UNSAFE: loading it imports {unsafe_text(names)}", "bad"))
    if stat:
        improved = sum(1 for r in d["metrics"].values() if r["improved"] is True)
        worse = sum(1 for r in d["metrics"].values() if r["improved"] is False)
        changed_metrics = sum(1 for r in d["metrics"].values() if r["old"] != r["new"])
        tensors = [f.get("tensors") for f in files["changed"] if f.get("tensors")]
        t_changed = sum(len(t["changed"]) + len(t["added"]) + len(t["removed"]) for t in tensors)
        lines.append(
            f"{changed_metrics} metric(s) changed ({improved} better, {worse} worse); "
            f"{len(md['added']) + len(md['removed']) + len(md['changed'])} metadata field(s) changed; "
            f"{sum(len((d.get('params') or {}).get(k) or {}) for k in ('added', 'removed', 'changed'))} param(s) "
            "changed; "
            f"files: {len(files['added'])} added, {len(files['removed'])} removed, {len(files['changed'])} changed"
            + (f" ({t_changed} tensor(s))" if tensors else "")
            + f", {files['unchanged']} unchanged"
        )
        return lines
    for key, value in md["added"].items():
        lines.append(style(f"+ {safe(key)}: {_json(value)}", "good"))
    for key, value in md["removed"].items():
        lines.append(style(f"- {safe(key)}: {_json(value)}", "bad"))
    for key, change in md["changed"].items():
        lines.append(f"~ {safe(key)}: {_json(change['old'])} -> {_json(change['new'])}")
    params = d.get("params") or {}
    if any(params.get(k) for k in ("added", "removed", "changed")):
        lines.append("params:")
        lines += _key_lines(params, style)
    if cats["added"] or cats["removed"]:
        parts = [f"+{safe(c)}" for c in cats["added"]] + [f"-{safe(c)}" for c in cats["removed"]]
        lines.append(f"categories: {' '.join(parts)}")
    lines += _metric_rows(d["metrics"], style)
    lines += change_lines(d.get("lineage") or {})
    lines += _environment.change_lines(d.get("environment") or {})
    for f in files["added"]:
        lines.append(style(f"+ file {safe(f['path'])} ({format_bytes(f['size'])})", "good"))
    for f in files["removed"]:
        lines.append(style(f"- file {safe(f['path'])} ({format_bytes(f['size'])})", "bad"))
    for f in files["changed"]:
        lines.append(f"~ file {safe(f['path'])} ({format_bytes(f['old_size'])} -> {format_bytes(f['new_size'])})")
        if "tensors" in f:
            lines += _tensor_lines(f["tensors"], style, full)
        if "keys" in f:
            lines += _key_lines(f["keys"], style)
    lines.append(f"  {files['unchanged']} file(s) unchanged")
    return lines


def _savings(ratio: float | None) -> str:
    """` (3.0x smaller than plain copies)`; a store bigger than its models (manifests, a tiny model) says so."""
    if not ratio:
        return ""
    if round(ratio, 1) > 1.0:
        return f" ({ratio:.1f}x smaller than plain copies)"
    if round(ratio, 1) == 1.0:
        return " (about the size of plain copies)"
    return f" ({1 / ratio:.1f}x the size of plain copies: manifests and metadata outweigh what sharing saved)"


def _clock(at: float, now: float) -> str:
    """`14:32` (local time, rounded up to the minute so "after" holds), with the date when not today."""
    when = datetime.fromtimestamp(math.ceil(at / 60) * 60)
    today = datetime.fromtimestamp(now).date()
    return f"{when:%H:%M}" if when.date() == today else f"{when:%Y-%m-%d %H:%M}"


def gc_when_text(ready_bytes: int, later_bytes: int, later_at: float | None, now: float | None = None) -> str:
    """When `mstore gc` gives the space back: `frees 2.9 MiB now`, or within the grace period
    `frees 2.9 MiB after 14:32 (or now with --grace 0)`, or both."""
    now = time.time() if now is None else now
    if not later_bytes or later_at is None or later_at <= now:
        total = ready_bytes + later_bytes
        return f"`mstore gc` frees {format_bytes(total)} now" if total else "nothing for `mstore gc` to free"
    later = f"after {_clock(later_at, now)}"
    if not ready_bytes:
        return f"`mstore gc` frees {format_bytes(later_bytes)} {later} (or now with --grace 0)"
    return (
        f"`mstore gc` frees {format_bytes(ready_bytes)} now and {format_bytes(later_bytes)} more {later} "
        "(all of it now with --grace 0)"
    )


def du_lines(usage: dict[str, Any], gc_text: str | None = None) -> list[str]:
    count = usage["versions"]
    lines = [
        f"{count} version{'' if count == 1 else 's'}, {format_bytes(usage['logical_bytes'])} of models "
        f"in {format_bytes(usage['stored_bytes'])} on disk{_savings(usage['savings_ratio'])}",
    ]
    if usage["unreachable_bytes"]:
        lines.append(f"{format_bytes(usage['unreachable_bytes'])} unreferenced; {gc_text or '`mstore gc` frees it'}")
    if usage["largest"]:
        lines.append(f"{'version':<20}  {'model':>10}  {'only here':>10}")
        for row in usage["largest"]:
            model, alone = format_bytes(row["logical_bytes"]), format_bytes(row["exclusive_bytes"])
            lines.append(f"{row['version']:<20}  {model:>10}  {alone:>10}")
    return lines
