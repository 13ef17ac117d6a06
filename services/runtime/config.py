"""One configuration mechanism for every objvid command line (depth, cache, diffusion, client).

Every flag ``--some-flag`` of service ``SERVICE`` falls back to the environment variable
``OBJVID_<SERVICE>_SOME_FLAG`` (dashes -> underscores, upper case); the flag wins when both are given.
``--help`` shows each flag's environment variable and default. The rules, the same in every CLI:

- booleans are always ``--flag/--no-flag``; their environment variable takes ``1/0``, ``true/false``,
  ``yes/no`` or ``on/off`` (click's boolean words);
- ports that can be switched off (``--metrics-port``) take ``off`` for off and ``0`` for "any free port"
  (the bound port is reported on stdout / in the ready file);
- paths are plain strings (empty = unset) so an environment variable can clear them;
- choices are checked for the flag and its environment variable alike (click checks both).

Built on click (typer, the client's CLI library, is click underneath): a service declares its flags as
``Flag`` values and turns them into click options with ``options(SERVICE, flags)``; a typer command uses
``typer_option(SERVICE, "--flag", help=...)`` for the same env name and help. Client-safe: imports only
click (and typer lazily).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

#: Every environment variable is ``ENV_ROOT + <SERVICE> + "_" + <FLAG>``.
ENV_ROOT = "OBJVID_"
#: Words meaning "off" for ``PORT_OR_OFF`` flags (case-insensitive).
OFF_WORDS = ("off", "none", "disabled", "-1")


def env_name(service: str, flag: str) -> str:
    """``("cache", "--metrics-port")`` -> ``"OBJVID_CACHE_METRICS_PORT"``."""
    return f"{ENV_ROOT}{service.upper()}_{flag.lstrip('-').upper().replace('-', '_')}"


class PortOrOff(click.ParamType):
    """A TCP port, ``0`` (any free port) or ``off`` (None: the endpoint is not started)."""

    name = "port|off"

    def convert(self, value: Any, param, ctx) -> int | None:
        if value is None or isinstance(value, int):
            port = value
        else:
            text = str(value).strip().lower()
            if text in OFF_WORDS:
                return None
            try:
                port = int(text)
            except ValueError:
                self.fail(f"expected a port 0..65535 or 'off', got {value!r}", param, ctx)
        if port is not None and not 0 <= port <= 65535:
            self.fail(f"expected a port 0..65535 or 'off', got {value!r}", param, ctx)
        return port


class Port(click.ParamType):
    """A TCP port; ``0`` = any free port (the bound port is reported)."""

    name = "port"

    def convert(self, value: Any, param, ctx) -> int:
        try:
            port = int(value)
        except (TypeError, ValueError):
            self.fail(f"expected a port 0..65535, got {value!r}", param, ctx)
        if not 0 <= port <= 65535:
            self.fail(f"expected a port 0..65535, got {value!r}", param, ctx)
        return port


PORT_OR_OFF = PortOrOff()
PORT = Port()

_METAVARS = {int: "INT", float: "NUMBER", str: "TEXT", click.IntRange: "INT", click.FloatRange: "NUMBER"}


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag of a service.

    name: ``"metrics-port"`` (no dashes in front). default: the documented default; a bool default makes
    a ``--name/--no-name`` switch. kind: a python type (int, float, str) or a click type (``PORT``,
    ``PORT_OR_OFF``, ``click.IntRange(1)``...); None = the type of ``default`` (str when default is None).
    choices: allowed string values. metavar: the placeholder shown in ``--help`` (never a Python type).
    aliases: older spellings still accepted (``--grace-seconds``), each with its env variable too (the
    one from ``name`` first).
    dest: the keyword the command receives (default ``name`` with underscores).
    """

    name: str
    default: Any
    help: str
    kind: Any = None
    choices: Sequence[str] | None = None
    metavar: str | None = None
    aliases: tuple[str, ...] = ()
    dest: str | None = None

    @property
    def key(self) -> str:
        return self.dest or self.name.replace("-", "_")

    def with_default(self, default: Any) -> Flag:
        """The same flag with another default (shared serving flags, per-service defaults)."""
        return dataclasses.replace(self, default=default)


def _shown_default(flag: Flag) -> str | bool:
    """What ``--help`` prints as the default: on/off for switches and off ports, "none" for empty text."""
    if isinstance(flag.default, bool):
        return "on" if flag.default else "off"
    if flag.default is None and flag.kind is PORT_OR_OFF:
        return "off"
    if flag.default == "" or flag.default is None:
        return "none"
    return True


def option(service: str, flag: Flag) -> click.Option:
    """The click option for ``flag`` with its ``OBJVID_<SERVICE>_<FLAG>`` fallback."""
    common = dict(
        envvar=[env_name(service, n) for n in (flag.name, *flag.aliases)],
        show_envvar=True,
        show_default=_shown_default(flag),
        default=flag.default,
        help=flag.help,
    )
    if isinstance(flag.default, bool):
        decls = [f"--{n}/--no-{n}" for n in (flag.name, *flag.aliases)] + [flag.key]
        return click.Option(decls, is_flag=True, **common)
    decls = [f"--{flag.name}", *(f"--{a}" for a in flag.aliases), flag.key]
    if flag.choices is not None:
        kind = click.Choice(list(flag.choices))
        metavar = flag.metavar or "[" + "|".join(flag.choices) + "]"
    else:
        kind = flag.kind
        if kind is None:
            kind = type(flag.default) if flag.default is not None else str
        metavar = (
            flag.metavar or _METAVARS.get(kind) or _METAVARS.get(type(kind)) or getattr(kind, "name", "VALUE")
        )
        metavar = metavar.upper()
    return click.Option(decls, type=kind, metavar=metavar, **common)


def options(service: str, flags: Iterable[Flag]) -> Callable:
    """Decorator adding every flag of ``flags`` (in order) to a click command."""
    flags = list(flags)

    def decorate(fn):
        params = [option(service, flag) for flag in flags]
        if isinstance(fn, click.Command):
            fn.params.extend(params)
        else:  # click.command() reads __click_params__ in reverse order of decoration
            fn.__dict__.setdefault("__click_params__", []).extend(reversed(params))
        return fn

    return decorate


def typer_option(service: str, *names: str, help: str, **kwargs: Any):
    """``typer.Option`` with the ``OBJVID_<SERVICE>_<FLAG>`` fallback shown in ``--help`` (first long name).

    For booleans pass both spellings, e.g. ``typer_option("client", "--save-buffer/--no-save-buffer")``.
    """
    import typer

    first = next(n for n in names if n.startswith("--")).split("/")[0]
    return typer.Option(
        *names, envvar=env_name(service, first), show_envvar=True, show_default=True, help=help, **kwargs
    )


def build(cls: type, values: dict[str, Any], **overrides: Any):
    """A dataclass ``cls`` from the keys of ``values`` that are its fields (plus ``overrides``)."""
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in values.items() if k in names}
    kwargs.update(overrides)
    return cls(**kwargs)


def group(name: str, help: str) -> click.Group:
    """The top-level command group of a CLI (``objvid-depth``...), with ``-h`` as ``--help``."""
    settings = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
    return click.Group(name=name, help=help, context_settings=settings)


LOG_LEVELS = ("debug", "info", "warning", "error")


def log_level_flag(default: str = "info") -> Flag:
    """``--log-level``: the same choices in every CLI."""
    return Flag("log-level", default, "log level (debug adds one line per request)", choices=LOG_LEVELS)


def run_cli(cli: click.Command, argv: list[str] | None, prog_name: str) -> int:
    """Run a click command line and return its exit code (the command's int return value; 2 for bad
    flags, with click's one-line message) instead of exiting, so ``main()`` can be called from tests."""
    try:
        result = cli.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        return 1
    return result if isinstance(result, int) else 0


def parse(cli: click.Group, argv: list[str]) -> dict[str, Any]:
    """The parsed options of ``argv`` (``["serve", "--port", "0"]``) without running the command (tests,
    wrappers); environment fallbacks applied. Raises click.UsageError / click.BadParameter on bad input."""
    name, *rest = argv
    command = cli.commands[name]
    with command.make_context(name, list(rest)) as ctx:
        return dict(ctx.params)
