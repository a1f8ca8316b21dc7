"""The web app: HTML pages (`/`, `/versions/{ref}`, `/diff`) and a JSON API under `/api/` with the CLI's
`--json` shapes. Read-only (GET/HEAD only), every stored string autoescaped by Jinja2, refs resolved by the
same resolver as the CLI (anything it refuses is a 404), no inline scripts (a Content-Security-Policy forbids
them), and every asset served from the package itself.

Handlers are plain functions: Starlette runs them in its thread pool, so a slow request (disk use of a
big store) never holds up another. The store is read as `log` reads it: without locks, because a version
appears in one rename and is removed in one rename, so a page sees each version whole or not at all.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..diff.compare import flatten_metrics, pickle_claim_of, pickle_verdict_of, unsafe_globals_of
from ..diff.environment import change_lines as environment_changes
from ..diff.environment import environment_of, environment_text, saved_by_of
from ..diff.lineage import change_lines
from ..diff.ranking import default_metrics
from ..errors import BadInput, MStoreError
from ..humanize import format_bytes, format_duration
from ..repository import Repository
from ..store.metadata import is_number
from ..store.versions import parse_id_time
from . import views

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
CHART_SPANS = (50, 200, 1000, 0)  # newest N versions in the chart; 0: all
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
ALLOWED_METHODS = {"GET", "HEAD"}
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class ReadOnly:
    """Anything but GET or HEAD is answered 405, and a request a browser marks as sent by another site
    (`Sec-Fetch-Site: cross-site`, e.g. a no-cors fetch from a page on the web) 403, on every path, before
    any route runs; every answer gets the security headers and a `Server-Timing` header with the time the
    app spent on it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ALLOWED_METHODS:
            response = JSONResponse(
                {"error": f"method {scope['method']} not allowed: mstore ui is read-only"},
                status_code=405,
                headers={"Allow": "GET, HEAD"},
            )
            await response(scope, receive, send)
            return
        if (b"sec-fetch-site", b"cross-site") in scope.get("headers", []):
            response = JSONResponse({"error": "cross-site requests are refused: open mstore ui directly"}, 403)
            await response(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000
                message["headers"] = [
                    *message.get("headers", []),
                    *SECURITY_HEADERS,
                    (b"server-timing", f"app;dur={took:.1f}".encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _age(version_id: str) -> str:
    try:
        seconds = time.time() - parse_id_time(version_id).timestamp()
    except ValueError:
        return ""
    return f"{format_duration(max(seconds, 0))} ago"


def _num(v: Any) -> str:
    """A whole number as it is (`15600`), any other number to 4 significant digits, nothing as `-`."""
    if isinstance(v, int) and is_number(v):
        return str(v)
    return f"{v:.4g}" if is_number(v) else ("-" if v is None else str(v))


def _epoch(version_id: str) -> float:
    return parse_id_time(version_id).timestamp()


def _int_param(request: Request, name: str, default: int | None, maximum: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadInput(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise BadInput(f"{name} must not be negative")
    return min(value, maximum) if maximum is not None else value


def _metric_values(meta: dict[str, Any]) -> dict[str, Any]:
    metrics = meta.get("metrics")
    return flatten_metrics(metrics) if isinstance(metrics, dict) else {}


def _matches(meta: dict[str, Any], text: str) -> bool:
    """Case-insensitive text filter over the version's ID, message and tags."""
    haystack = " ".join([str(meta.get("timestamp", "")), str(meta.get("message", "")), *meta.get("tags", [])])
    return text.casefold() in haystack.casefold()


def create_app(root: str | Path | Repository, *, allowed_hosts: list[str] | None = None) -> Starlette:
    """The app over the store at `root` (or a Repository: a remote browsed read-only). `allowed_hosts` (default:
    loopback names only) are the Host headers it answers, so a web page elsewhere cannot reach it through DNS
    rebinding; ["*"]: any."""
    repository = root if isinstance(root, Repository) else Repository.open(root)
    env = Environment(
        loader=PackageLoader("mstore.ui", "templates"),
        autoescape=select_autoescape(["html"], default=True),
    )
    env.filters["bytes"] = lambda n: format_bytes(n) if is_number(n) else "-"
    env.filters["num"] = _num
    env.filters["pct"] = lambda v: f"{v:+.1%}" if is_number(v) else ""
    env.filters["signed"] = lambda v: f"{v:+.4g}" if is_number(v) else ""
    env.filters["age"] = _age
    env.filters["count"] = lambda n: views.human_count(n) if isinstance(n, int) else "-"
    env.filters["json"] = lambda v: json.dumps(v, ensure_ascii=False)  # plain text: autoescaped like the rest
    env.globals["store_name"] = str(getattr(repository.store, "url", repository.root))  # a browsed remote: its URL
    # "unsafe" / "unknown" (loading would run the pickles' imports) or "" (safe, or no pickles)
    env.filters["unsafe_verdict"] = lambda meta: v if (v := pickle_verdict_of(meta)[0]) in ("unsafe", "unknown") else ""

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=status)

    def not_found_page(message: str) -> HTMLResponse:
        return page("error.html", 404, title="Not found", message=message)

    def version_page_rows(
        repo: Repository,
        tag: str | None,
        text: str,
        where: str | None,
        sort: tuple[str, bool | None] | None,
        offset: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of `log` (newest first, or ranked by `sort`: a metric and whether higher values come
        first, None: the better ones) after the tag, text and `--where` filters, and whether more follow.
        A bad `where` or `sort` raises BadInput (its one-line error)."""
        tags = [tag] if tag else None
        by, descending = sort if sort else (None, None)
        if not text:
            entries = repo.log(limit=offset + limit + 1, tags=tags, where=where, sort=by, descending=descending)
        else:
            entries = repo.log(tags=tags, where=where, sort=by, descending=descending)
            entries = [e for e in entries if _matches(e, text)]
        return entries[offset : offset + limit], len(entries) > offset + limit

    # -- HTML ----------------------------------------------------------------------------------------

    def index(request: Request) -> Response:
        repo = repository.listed_once()
        try:
            offset = _int_param(request, "offset", 0) or 0
            limit = _int_param(request, "limit", PAGE_SIZE, MAX_PAGE_SIZE) or PAGE_SIZE
            span = _int_param(request, "span", CHART_SPANS[1])
        except BadInput as exc:
            return page("error.html", 400, title="Bad request", message=str(exc))
        tag = request.query_params.get("tag") or None
        text = request.query_params.get("q", "").strip()
        where = request.query_params.get("where", "").strip()
        sort_by = request.query_params.get("sort", "").strip()
        order = request.query_params.get("order", "")
        all_tags = repo.tags()
        if tag is not None and tag not in all_tags:
            return not_found_page(f"no tag named {tag!r}")
        where_error = None
        sort = (sort_by, {"desc": True, "asc": False}.get(order)) if sort_by else None
        try:
            rows, more = version_page_rows(repo, tag, text, where or None, sort, offset, limit)
        except BadInput as exc:  # a bad where or sort: its one line, the rest of the page as usual
            where_error = exc.cli_message.replace("--where", "where")
            if sort_by and "cannot tell whether" in where_error:  # the CLI's --desc/--asc are the order box here
                where_error = (
                    f"cannot tell whether a higher or a lower {sort_by!r} is better: choose highest or lowest first"
                )
            rows, more = [], False
        ids = repo.ids()
        metrics = request.query_params.getlist("metric") or default_metrics(rows)
        numeric = default_metrics(rows)
        charted = [m for m in request.query_params.getlist("chart") if m] or (
            ["accuracy"] if "accuracy" in numeric else numeric[:1]
        )
        chart_choices = list(dict.fromkeys([*numeric, *charted]))
        for row in rows:
            row["_metrics"] = _metric_values(row)
            row["_params"] = views.param_values(row)
        filters = {
            k: v for k, v in (("tag", tag), ("q", text), ("where", where), ("sort", sort_by), ("order", order)) if v
        }
        return page(
            "index.html",
            400 if where_error else 200,
            title="Versions",
            where=where,
            where_error=where_error,
            sort_by=sort_by,
            order=order,
            sort_choices=list(dict.fromkeys([*numeric, *([sort_by] if sort_by else [])])),
            filters=filters,
            params=views.param_columns(rows),
            layout=request.query_params.get("layout") or "panels",
            log_scale=request.query_params.get("log") == "1",
            x_axis=request.query_params.get("x") or "version",
            rows=rows,
            more=more,
            offset=offset,
            limit=limit,
            tag=tag,
            text=text,
            all_tags=sorted(all_tags),
            total=len(ids),
            known=set(ids),
            latest=ids[-1] if ids else None,
            metrics=metrics,
            chart_choices=chart_choices,
            charted=charted,
            span=span,
            spans=CHART_SPANS,
        )

    def version(request: Request) -> Response:
        repo = repository.listed_once()
        ref = request.path_params["ref"]
        try:
            shown = repo.show(ref)
        except BadInput as exc:
            return not_found_page(str(exc))
        vid = shown["metadata"]["timestamp"]
        tags = sorted(name for name, target in repo.tags().items() if target == vid)
        histories = views.tag_histories(views.promotions(repo), vid, tags)
        tensor_files = views.tensor_listing(repo, vid)
        ids = repo.ids()
        meta = shown["metadata"]
        block = meta.get("mstore") if isinstance(meta.get("mstore"), dict) else {}
        shown_apart = {"metrics", "params", "mstore", "message", "timestamp", "model_hash"}
        extra = {k: v for k, v in meta.items() if k not in shown_apart}
        share = shown["shared_with_parent_bytes"] / shown["size"] if shown["parent"] and shown["size"] else None
        return page(
            "version.html",
            title=f"Version {vid}",
            shown=shown,
            vid=vid,
            tags=tags,
            histories=histories,
            tensor_files=tensor_files,
            saved_at=views.absolute_time(vid),
            is_latest=bool(ids) and ids[-1] == vid,
            meta=meta,
            block=block,
            extra=extra,
            metrics=_metric_values(meta),
            params=views.param_values(meta),
            share=share,
            store=str(repo.root.resolve()),
            saved_by=saved_by_of(meta),
            environment=environment_text(environment_of(meta)),
            verdict=(pickle_verdict_of(meta)[0], pickle_verdict_of(meta)[1] + pickle_claim_of(meta)),
            unsafe_globals=unsafe_globals_of(meta),
        )

    def diff(request: Request) -> Response:
        repo = repository.listed_once()
        old = request.query_params.get("old") or "latest~1"
        new = request.query_params.get("new") or "latest"
        picked = request.query_params.getlist("v")
        try:
            if picked:  # two rows ticked on the version list: the older one is `old`
                if len(picked) != 2:
                    return page(
                        "error.html", 400, title="Bad request", message=f"diff needs two versions, got {len(picked)}"
                    )
                old, new = sorted(repo.resolve(ref) for ref in picked)
            d = repo.compare(old, new)
        except BadInput as exc:
            return not_found_page(str(exc))
        changed_only = request.query_params.get("changed") == "1"
        metric_rows = [
            (name, row) for name, row in d["metrics"].items() if not changed_only or row["old"] != row["new"]
        ]
        tensor_files = []
        for f in d["files"]["changed"]:
            t = f.get("tensors")
            if t:
                tensor_files.append((f, t, views.tensor_diff_rows(t)))
        return page(
            "diff.html",
            title=f"Diff {d['version1']} → {d['version2']}",
            d=d,
            old=old,
            new=new,
            changed_only=changed_only,
            metric_rows=metric_rows,
            tensor_files=tensor_files,
            lineage=change_lines(d["lineage"]) + environment_changes(d.get("environment") or {}),
            apart=format_duration(abs(d["time_diff"])),
        )

    def compare(request: Request) -> Response:
        """`/compare?v=REF&v=REF...`: the versions side by side (oldest first), the best of each metric marked."""
        repo = repository.listed_once()
        refs = request.query_params.getlist("v")
        if len(refs) < 2:
            return page(
                "error.html", 400, title="Bad request", message="pick two or more versions to compare (?v=REF&v=REF)"
            )
        if len(refs) > views.MAX_COMPARED:
            return page(
                "error.html", 400, title="Bad request", message=f"compare at most {views.MAX_COMPARED} versions at once"
            )
        try:
            ids = sorted(set(repo.resolve(ref) for ref in refs))
            metas = [repo.get(vid) for vid in ids]
        except BadInput as exc:
            return not_found_page(str(exc))
        if len(ids) < 2:
            return page(
                "error.html",
                400,
                title="Bad request",
                message=f"those references all name {ids[0]}: pick two or more versions",
            )
        by_version: dict[str, list[str]] = {}
        for name, target in sorted(repo.tags().items()):
            by_version.setdefault(target, []).append(name)
        return page(
            "compare.html",
            title=f"Compare {len(ids)} versions",
            ids=ids,
            metas=metas,
            tags=by_version,
            table=views.compare_table(metas),
            saved_at=[views.absolute_time(v) for v in ids],
            diff_pair=(ids[0], ids[-1]),
        )

    # -- JSON API: the CLI's --json shapes -------------------------------------------------------------

    def api_versions(request: Request) -> Response:
        repo = repository.listed_once()
        try:
            offset = _int_param(request, "offset", 0) or 0
            limit = _int_param(request, "limit", None)
            tag = request.query_params.getlist("tag") or None
            entries = repo.log(limit=None if limit is None else offset + limit, tags=tag)
        except BadInput as exc:
            return _error(400, str(exc))
        return JSONResponse(entries[offset:])

    def api_version(request: Request) -> Response:
        repo = repository.listed_once()
        try:
            return JSONResponse(repo.show(request.path_params["ref"]))
        except BadInput as exc:
            return _error(404, str(exc))

    def api_diff(request: Request) -> Response:
        repo = repository.listed_once()
        old, new = request.query_params.get("old"), request.query_params.get("new")
        if not old or not new:
            return _error(400, "give both versions: /api/diff?old=REF&new=REF")
        try:
            return JSONResponse(repo.compare(old, new))
        except BadInput as exc:
            return _error(404, str(exc))

    def api_metric(request: Request) -> Response:
        """`[{"version", "timestamp", "value"}]` for every version (the newest `limit`; with `where`, those
        the expression holds for) where the metric is a number, oldest first."""
        repo = repository.listed_once()
        name = request.path_params["name"]
        try:
            limit = _int_param(request, "limit", None)
            entries = repo.log(limit=limit or None, where=request.query_params.get("where") or None)
        except BadInput as exc:
            return _error(400, exc.cli_message.replace("--where", "where"))
        points = []
        for meta in reversed(entries):
            value = _metric_values(meta).get(name)
            if is_number(value):
                vid = meta["timestamp"]
                points.append({"version": vid, "timestamp": _epoch(vid), "value": value})
        return JSONResponse(points)

    def api_promotions(request: Request) -> Response:
        """Every tag's moves, newest first: `[{"tag", "from", "to", "time", "who", "message"}]`."""
        return JSONResponse(views.promotions(repository.listed_once()))

    def api_du(request: Request) -> Response:
        repo = repository.listed_once()
        try:
            top = _int_param(request, "top", 10, 1000)
        except BadInput as exc:
            return _error(400, str(exc))
        return JSONResponse(repo.du(largest=top or 0))

    def api_not_found(request: Request) -> Response:
        return _error(404, f"no such API path: {request.url.path}")

    get = ["GET", "HEAD"]
    routes = [
        Route("/", index, methods=get),
        Route("/versions/{ref:path}", version, methods=get),
        Route("/diff", diff, methods=get),
        Route("/compare", compare, methods=get),
        Route("/api/versions", api_versions, methods=get),
        Route("/api/versions/{ref:path}", api_version, methods=get),
        Route("/api/diff", api_diff, methods=get),
        Route("/api/metrics/{name:path}", api_metric, methods=get),
        Route("/api/du", api_du, methods=get),
        Route("/api/promotions", api_promotions, methods=get),
        Route("/api/{rest:path}", api_not_found, methods=get),
        Mount("/static", StaticFiles(packages=[("mstore.ui", "static")]), name="static"),
    ]

    async def on_error(request: Request, exc: Exception) -> Response:
        message = exc.cli_message if isinstance(exc, MStoreError) else "internal error"
        if request.url.path.startswith("/api/"):
            return _error(500, message)
        return page("error.html", 500, title="Error", message=message)

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(ReadOnly),
            Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or LOOPBACK_HOSTS),
        ],
        exception_handlers={MStoreError: on_error},
    )
    app.state.repository = repository
    return app
