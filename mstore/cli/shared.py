"""The Typer application every command registers on, and what all commands share: global options,
one-line errors and exit codes, JSON output, progress bars, colour.

Data goes to stdout (exactly one JSON document with --json); messages, progress and errors go to
stderr. Exit codes: 0 success, 1 a problem was found, 2 bad usage or bad input.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn, Optional

import typer
from typer.core import TyperArgument, TyperGroup

from .. import __version__
from ..errors import EXIT_PROBLEM, MStoreError, MStoreWarning
from ..humanize import safe
from ..repository import Repository
from .render import gc_when_text

DEFAULT_STORE = "data/models"
PROGRESS_MIN_BYTES = 64 << 20


_UsageError: type[Exception] = typer.BadParameter.__mro__[1]  # click's UsageError, whichever click typer uses


class _Argument(TyperArgument):
    """A positional argument shown as `PATH` / `[REF]` in usage lines (typer shows `{PATH}`) and without a
    type in the argument list."""

    def make_metavar(self, ctx: Any, *, usage: bool = False) -> str:
        name = self.metavar or (self.name or "").upper()
        if not usage:
            return name
        return (name if self.required else f"[{name}]") + ("..." if self.nargs != 1 else "")


def _set_store(value: Optional[str]) -> None:
    if value is not None:
        state.store = value


def _set_quiet(value: bool) -> None:
    if value:
        state.quiet = True


def _global_options() -> list[Any]:
    """`--store` and `--quiet` after the command name too (`mstore save -q x`, `mstore log --store DIR`)."""
    probe = typer.Typer(add_completion=False)

    @probe.command()
    def options(
        store: Annotated[
            Optional[str],
            typer.Option(
                "--store",
                "-s",
                metavar="DIR",
                expose_value=False,
                callback=_set_store,
                help="Store directory (also accepted before the command; default: $MSTORE_DIR, else data/models).",
            ),
        ] = None,
        quiet: Annotated[
            bool,
            typer.Option(
                "--quiet", "-q", expose_value=False, callback=_set_quiet, help="Print only results, no messages."
            ),
        ] = False,
    ) -> None:
        """Never run: only its options are taken."""

    return list(typer.main.get_command(probe).params)


class CommandGroup(TyperGroup):
    """Maps every known error to one line on stderr and its exit code, in one place."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        extra = _global_options()
        for command in self.commands.values():
            for param in command.params:
                if isinstance(param, TyperArgument):
                    param.__class__ = _Argument
            if not any(param.name == "store" for param in command.params):
                command.params.extend(extra)

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        """`mstore --bogus`: parsing the options before the command fails in one line too."""
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `mstore`: the help, as before
                raise
            usage_fail(exc)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """A mistyped command is one line with a suggestion, not Click's usage box."""
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None and not ctx.resilient_parsing:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (see `{ctx.command_path} --help`)"
            fail(f"no such command {name!r}{hint}", 2)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", MStoreWarning)
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except MStoreError as exc:
            fail(exc.cli_message, exc.exit_code)
        except BrokenPipeError:  # `mstore log | head`: stop quietly, as git does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
        except OSError as exc:
            if os.environ.get("MSTORE_DEBUG"):
                raise
            where = f": {exc.filename}" if exc.filename else ""
            fail(f"{exc.strerror or exc}{where}", EXIT_PROBLEM)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except _UsageError as exc:  # a missing argument, an unknown option: one line, not Click's usage box
            usage_fail(exc)


app = typer.Typer(
    cls=CommandGroup,
    help="Versioned, deduplicated, verifiable storage for trained ML models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _State:
    store: str = DEFAULT_STORE
    quiet: bool = False


state = _State()


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """mstore's own warnings as one line on stderr (others as Python shows them)."""
    if issubclass(category, MStoreWarning):
        typer.echo(f"mstore: warning: {safe(str(message))}", err=True)
    else:
        _python_showwarning(message, category, *args, **kwargs)


_python_showwarning = warnings.showwarning


def fail(message: str, code: int) -> NoReturn:
    if os.environ.get("MSTORE_DEBUG") and sys.exc_info()[0] is not None:
        raise
    typer.echo(f"mstore: error: {safe(message)}", err=True)
    raise typer.Exit(code)


def usage_fail(exc: Exception) -> NoReturn:
    text = str(getattr(exc, "format_message", lambda: str(exc))()).rstrip(".")
    where = getattr(exc, "ctx", None)
    hint = f" (see `{where.command_path} --help`)" if where is not None else ""
    fail(text[:1].lower() + text[1:] + hint, 2)


def gc_when(repo: Repository) -> str | None:
    r"""`\`mstore gc\` frees 2.9 MiB after 14:32 (or now with --grace 0)`: when the space of removed versions
    comes back (None when the store cannot say: a damaged version makes gc refuse anyway)."""
    try:
        pending = repo.gc_pending()
    except (MStoreError, OSError):
        return None
    return gc_when_text(pending.bytes, pending.young_bytes, pending.young_until)


def note(message: str) -> None:
    if not state.quiet:
        typer.echo(message, err=True)


def emit_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def open_repo(remote: str | None = None) -> Repository:
    """The store (`--store`), or with `remote` a read-only view of that remote (NAME|URL, no clone)."""
    if remote is not None:
        from ..modelpath import offline_mode

        return Repository.browse(remote, store=state.store, offline=offline_mode(None))
    return Repository.open(state.store)


BrowseOpt = Annotated[
    Optional[str],
    typer.Option(
        "--remote",
        metavar="NAME|URL",
        help="Read this remote instead of the store, without cloning it: only metadata is fetched (into a "
        "mirror in the cache), never model bytes.",
    ),
]


@contextmanager
def byte_progress(total_of: Callable[[], int], label: str) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on stderr for long work on a terminal; nothing when piped or quiet.

    `total_of` is only called when a bar could be shown, so piped runs never pay for sizing the work.
    """
    if state.quiet or not sys.stderr.isatty():
        yield None
        return
    total = total_of()
    if total < PROGRESS_MIN_BYTES:
        yield None
        return
    with progress_bar(label, total) as (bar, task):
        yield lambda n: bar.advance(task, n)


@contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[tuple[Any, Any]]:
    """A transient rich bar on stderr (bytes done / total, speed); rich is imported only when one is shown."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        yield bar, bar.add_task(label, total=total)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"mstore {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    store: Annotated[
        str,
        typer.Option(
            "--store", "-s", envvar="MSTORE_DIR", metavar="DIR", help="Store directory (before or after the command)."
        ),
    ] = DEFAULT_STORE,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only results, no messages.")] = False,
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    """Versioned, deduplicated, verifiable storage for trained ML models."""
    state.store = store
    state.quiet = quiet


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
TrustedKeysOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--trusted-keys",
        metavar="PATH",
        help="Refuse a version no key here signed: a PEM public key, or a directory of *.pem (repeatable; "
        "also MSTORE_TRUSTED_KEYS).",
    ),
]
AllowUnsafeOpt = Annotated[
    bool,
    typer.Option(
        "--allow-unsafe",
        help="Hand over a version whose pickles are unsafe or unknown (loading runs what they import); "
        "also MSTORE_ALLOW_UNSAFE=1.",
    ),
]


EndpointOpt = Annotated[
    Optional[str],
    typer.Option(
        "--endpoint-url",
        metavar="URL",
        help="S3 endpoint (MinIO, R2, Ceph…); default: AWS_ENDPOINT_URL or AWS itself.",
    ),
]


class BarProgress:
    """TransferProgress on a rich bar: the total is known only once the transfer has planned its work."""

    def __init__(self, bar: Any, task: Any) -> None:
        self.bar, self.task = bar, task

    def start(self, total_bytes: int) -> None:
        self.bar.update(self.task, total=total_bytes, completed=0)

    def advance(self, n: int) -> None:
        self.bar.advance(self.task, n)


@contextmanager
def transfer_progress(label: str) -> Iterator[BarProgress | None]:
    """A progress bar for network work on a terminal (its size is unknown until planned); none when piped."""
    if state.quiet or not sys.stderr.isatty():
        yield None
        return
    with progress_bar(label, None) as (bar, task):
        yield BarProgress(bar, task)


_ROLES = {"id": "yellow", "deco": "cyan", "good": "green", "bad": "red", "dim": "bright_black", "head": "bright_black"}


def styled(text: str, role: str) -> str:
    """Colour for a terminal; plain when piped or NO_COLOR is set."""
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty() or role not in _ROLES:
        return text
    return typer.style(text, fg=_ROLES[role])


def echo_lines(lines: list[str]) -> None:
    for line in lines:
        typer.echo(line)
