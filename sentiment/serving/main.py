"""``python app.py``: serve the app on 127.0.0.1:5000 with gunicorn, or Flask's debug server.

Settings come from the environment (:mod:`sentiment.settings`); the options
here override the four a person starting a server most often changes. Every
problem that can be seen before serving (a bad setting, a port in use, a model
that cannot be loaded) stops the command with one line and a non-zero status.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable

from sentiment.serving.process import prepare_process, start_serving, stop_serving, usable_cores
from sentiment.settings import Settings, SettingsError
from sentiment.web.factory import MODEL_ERRORS, StartupError, create_app

BAD_SETTINGS = 2


def whole_number(what: str, least: int, most: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [least, most], or a message naming ``what``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < least or (most is not None and value > most):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="app.py", description="Serve the sentiment app (gunicorn: one process per core).")
    parser.add_argument("--host", help="address to listen on (default: $SENTIMENT_HOST or "
                                       "127.0.0.1)")
    parser.add_argument("--port", type=whole_number("a port number (1-65535)", 1, 65535),
                        help="default: $SENTIMENT_PORT or 5000")
    parser.add_argument("--workers", type=whole_number("a number of processes (1 or more)", 1),
                        help="processes sharing the port (default: $SENTIMENT_WORKERS or one "
                             f"per usable CPU core, {usable_cores()} here)")
    parser.add_argument("--threads", type=whole_number("a number of threads (1 or more)", 1),
                        help="request threads per process (default: $SENTIMENT_THREADS or 4)")
    parser.add_argument("--debug", action="store_true",
                        help="Flask's debug server, one process (never in production)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    given = {key: value for key in ("host", "port", "workers", "threads")
             if (value := getattr(args, key)) is not None}
    try:
        settings = Settings.load(given)
    except SettingsError as exc:
        print(f"error: {exc}".replace("\n", "\nerror: "), file=sys.stderr)
        return BAD_SETTINGS
    # Imported once the settings are checked: gunicorn reads WEB_CONCURRENCY as it is
    # imported, and a value that is no number would end in its traceback, not our line.
    from sentiment.serving.server import check_port_free, serve

    try:  # before loading anything: a port in use is told at once
        check_port_free(settings.host, settings.port)
    except OSError as exc:
        print(f"error: cannot listen on {settings.host}:{settings.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.debug:
        return _debug(settings)
    try:
        return serve(settings, settings.workers or usable_cores(), settings.threads)
    except (OSError, *MODEL_ERRORS) as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return 1


def _debug(settings: Settings) -> int:
    """Flask's development server with the debugger, in this one process."""
    prepare_process()
    try:
        app = create_app(settings.model_dump(exclude={"secret_key"}, exclude_unset=True))
    except StartupError as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)
        return 1
    start_serving(app)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        app.run(host=settings.host, port=settings.port, debug=True, use_reloader=False)
    finally:
        stop_serving(app)
    return 0
