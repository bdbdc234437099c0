"""``batchmt-server``: run the gateway, or prepare the embedded model.

Every setting is a flag (``--max-wait-ms 5``) and an environment variable (``BATCHMT_MAX_WAIT_MS=5``);
flags win. ``batchmt-server --help`` lists them all.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import types
import typing
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError
from pydantic_settings import SettingsError

from . import __version__
from .auth.security_settings import SECRET_FIELDS
from .settings import Settings, unknown_variables

__all__ = ["default_text", "main", "parse_settings"]


def default_text(name: str) -> str:
    """A setting's default as ``--help`` and docs/api.md's settings table show it: ``on``/``off`` for switches,
    ``~`` for the home folder, ``–`` for none (never pydantic's ``PydanticUndefined`` of a factory default)."""
    field = Settings.model_fields[name]
    value = field.get_default(call_default_factory=True)
    if value is None or value == {} or value == []:
        return "–"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, Path):
        home = str(Path.home())
        text = str(value)
        return "~" + text[len(home) :] if text.startswith(home) else text
    return str(value)


def _flag_type(annotation: typing.Any):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and args:
        annotation = args[0]
    if typing.get_origin(annotation) is typing.Literal:
        return str, list(typing.get_args(annotation))
    if annotation in (int, float, Path):
        return annotation, None
    return str, None


class _SecretFlag(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        env = "BATCHMT_" + self.dest.upper()
        alt = f" or --{self.dest.replace('_', '-')}-file" if self.dest in ("api_key", "metrics_token") else ""
        parser.error(
            f"{option_string} is not accepted on the command line (ps shows a process's arguments): set {env}{alt}"
        )


def _url_without_password(value: str) -> str:
    """``--database-url``: a URL with a password is refused (``ps`` shows a process's arguments)."""
    try:
        password = urlsplit(value).password
    except ValueError:
        password = None
    if password:
        raise argparse.ArgumentTypeError(
            "the URL holds a password, which ps would show: set BATCHMT_DATABASE_URL instead, "
            "or give the password to PostgreSQL through PGPASSWORD or ~/.pgpass"
        )
    return value


#: settings whose flag may be given several times: `--engine-url A --engine-url B` is a pool of two engines
REPEATABLE_FIELDS = {"engine_url"}


def _add_settings_flags(parser: argparse.ArgumentParser, only: frozenset[str] | None = None) -> None:
    """A flag per setting (``only``: these settings' flags, e.g. the store's for ``keys``)."""
    group = parser.add_argument_group("settings (each also BATCHMT_<NAME> in the environment)")
    for name, field in Settings.model_fields.items():
        if only is not None and name not in only:
            continue
        if name in SECRET_FIELDS:  # from the environment or a file only: `ps` shows a process's arguments
            group.add_argument("--" + name.replace("_", "-"), action=_SecretFlag, nargs="?", help=argparse.SUPPRESS)
            continue
        flag = "--" + name.replace("_", "-")
        help_ = field.description or ""
        if "default" not in help_:  # some descriptions say their default in words already
            help_ += f" (default: {default_text(name)})"
        help_ = help_.replace("%", "%%")  # argparse formats help strings with %
        if field.annotation is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif name in REPEATABLE_FIELDS:
            group.add_argument(flag, dest=name, action="append", default=None, help=help_ + "; repeatable")
        elif name == "engine_args":  # --engine-arg key=value, repeatable (presets.parse_engine_arg)
            group.add_argument(
                "--engine-arg", dest=name, action="append", default=None, metavar="KEY=VALUE", help=help_
            )
        else:
            typ, choices = _flag_type(field.annotation)
            if name == "database_url":
                typ = _url_without_password
            group.add_argument(flag, dest=name, type=typ, choices=choices, default=None, help=help_)


def parse_settings(ns: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in vars(ns).items() if k in Settings.model_fields and v is not None}
    for name in REPEATABLE_FIELDS & overrides.keys():  # the setting is one comma-separated string
        overrides[name] = ",".join(overrides[name])
    if "engine_args" in overrides:
        from .models.presets import parse_engine_arg

        try:
            overrides["engine_args"] = dict(parse_engine_arg(item) for item in overrides["engine_args"])
        except ValueError as exc:
            raise SystemExit(f"batchmt-server: --engine-arg: {exc}") from None
    return Settings(**overrides)


def _expects(name: str) -> str:
    """What a setting takes, in words: for an error message."""
    field = Settings.model_fields.get(name)
    if field is None:
        return "a valid value"
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and args:
        annotation = args[0]
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    bounds = []
    for meta in field.metadata:
        for attr, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                bounds.append(f"{word} {getattr(meta, attr)}")
    kinds: dict[typing.Any, str] = {int: "an integer", float: "a number", bool: "true or false", Path: "a path"}
    kinds[str] = "text"
    kind = kinds.get(annotation, "a JSON object" if typing.get_origin(annotation) is dict else "a valid value")
    return kind + (" " + " and ".join(bounds) if bounds else "")


def settings_errors(exc: ValidationError, ns: argparse.Namespace | None = None) -> list[str]:
    """One line per invalid setting: where it came from (the flag or the variable), the value, what it expects."""
    given = vars(ns) if ns is not None else {}
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        name = loc[0] if loc else ""
        why = err.get("msg", "invalid")
        why = why[0].lower() + why[1:] if why else why
        if name not in Settings.model_fields:  # a rule across settings (model validators)
            lines.append(f"invalid settings: {why.removeprefix('value error, ')}")
            continue
        if given.get(name) is not None:
            source = "--" + name.replace("_", "-")
        else:
            source = "BATCHMT_" + name.upper()
        value = err.get("input")
        shown = "" if name in SECRET_FIELDS or isinstance(value, dict) else f"={value}"
        lines.append(f"{source}{shown}: expects {_expects(name)} ({why})")
    return lines


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchmt-server", description="batchmt translation gateway")
    parser.add_argument("--version", action="version", version=f"batchmt-server {__version__}")
    sub = parser.add_subparsers(dest="command")
    for name, help_ in (
        ("serve", "run the gateway (the default)"),
        ("prepare-model", "convert the embedded model once and print its folder"),
        ("calibrate", "measure the largest pack size that keeps quality on this model, cache it"),
        ("selftrain", "one round of self-training (ReST) of the served model on English sources: resumable"),
    ):
        p = sub.add_parser(name, help=help_)
        if name == "selftrain":
            from .selftrain.cli import add_selftrain_args

            add_selftrain_args(p)
        if name == "calibrate":
            p.add_argument("--limit", type=int, default=None, help="use only the first N calibration pairs")
            p.add_argument("--sizes", default="1,2,4,8,16", help="pack sizes to try (default: 1,2,4,8,16)")
        _add_settings_flags(p)
    from .auth.keys_cli import add_keys_parser

    add_keys_parser(sub, _add_settings_flags)
    _add_settings_flags(parser)
    return parser


def _load_settings(ns: argparse.Namespace) -> Settings | None:
    """The settings of flags and environment, or None after saying on stderr what is wrong with them: a
    ``BATCHMT_*`` variable that is no setting, a value that is not what the setting expects."""
    unknown = unknown_variables(os.environ)
    for message in unknown:
        print(f"batchmt-server: {message}", file=sys.stderr)
    if unknown:
        return None
    try:
        return parse_settings(ns)
    except ValidationError as exc:
        for message in settings_errors(exc, ns):
            print(f"batchmt-server: {message}", file=sys.stderr)
    except SettingsError as exc:  # a variable pydantic-settings cannot even decode (a JSON setting's)
        cause = exc.__cause__ or exc
        name = str(exc).split("field ", 1)[-1].split(" ", 1)[0].strip('"')
        print(f"batchmt-server: BATCHMT_{name.upper()}: expects {_expects(name)} ({cause})", file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv.insert(0, "serve")
    ns = _build_parser().parse_args(argv)
    settings = _load_settings(ns)
    if settings is None:
        return 2
    from .telemetry.observability import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    if ns.command == "prepare-model":
        from .models.embedded import resolve_model

        print(resolve_model(settings.model, settings.cache_dir))
        return 0
    if ns.command == "keys":
        from .auth.keys_cli import run_keys

        return run_keys(ns, settings)
    if ns.command == "selftrain":
        from .selftrain.cli import run_selftrain

        return run_selftrain(ns, settings)
    if ns.command == "calibrate":
        import asyncio

        return asyncio.run(_calibrate(settings, ns.limit, tuple(int(x) for x in ns.sizes.split(","))))
    return serve(settings)


def serve(settings: Settings) -> int:
    """Run the gateway behind the HTTP front (middleware.py, uvicorn_protocol.py) under uvicorn."""
    from .auth.keys import KeyRing
    from .auth.keys_cli import auth_summary
    from .auth.security_settings import check_limits
    from .http.app import create_app
    from .http.middleware import GuardConfig
    from .http.serving import run_server
    from .stores.keys import open_key_store
    from .telemetry.observability import setup_tracing

    for level, message in auth_summary(settings):  # auth on or off, and who is admin: said once, at start
        getattr(logging.getLogger("batchmt.auth"), level)(message)
    try:
        check_limits(settings)
        guard = GuardConfig.from_settings(settings, KeyRing.from_settings(settings, open_key_store(settings)))
    except (OSError, ValueError) as exc:
        print(f"batchmt-server: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings, keys=guard.keys)  # the HTTP front (middleware.py) is part of the app
    setup_tracing(app, settings.otel_endpoint, settings.otel_service_name)
    return run_server(app, settings)


async def _calibrate(settings: Settings, limit: int | None, sizes: tuple[int, ...]) -> int:
    from .engines import build_engine
    from .pipeline.calibration import calibrate, load_pairs
    from .prompting.template import Template

    engine = build_engine(settings)
    await engine.start()
    from .pipeline.calibration import choose_template
    from .prompting.chat import apply_form, engine_tokenizer

    tokenizer = engine_tokenizer(engine, settings)
    variants = {
        name: apply_form(
            Template.load(name, settings.prompts_dir), settings.template_form, tokenizer, engine.model_name
        )
        for name in settings.template_names
    }
    pairs = load_pairs(settings.calibration_data, limit)
    try:
        single = None
        if len(variants) > 1:  # template "auto": the fastest variant that keeps quality first
            choice = await choose_template(
                engine,
                variants,
                pairs,
                max_chrf_drop=settings.max_chrf_drop,
                max_copy_increase=settings.max_copy_increase,
                cache_dir=settings.cache_dir,
            )
            print(choice.summary())
            single = choice.result(choice.chosen).single
            template = variants[choice.chosen]
        else:
            (template,) = variants.values()
        cal = await calibrate(
            engine,
            template,
            pairs,
            sizes=sizes,
            max_chrf_drop=settings.max_chrf_drop,
            max_parse_failure=settings.max_parse_failure,
            cache_dir=settings.cache_dir,
            single=single,
        )
    finally:
        await engine.close()
    print(cal.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
