"""Serve the app in a real process for the crash and multi-process tests.

Configured exactly as in production, from the environment: ``INSTANCE_PATH``,
``SENTIMENT_MODEL_DIR``, ``SENTIMENT_CHECKPOINT_EVERY`` and the other
``SENTIMENT_*`` keys. Listens with waitress on 127.0.0.1, port 0, and prints
``PORT <n>`` once it accepts connections.

Test-only addition, not in the app:

* ``TEST_SLOW_WRITES=<seconds>``: every model-version file write (npz,
  manifest, CURRENT) first appends ``<file name>`` to
  ``<instance>/write-events`` and pauses, so a test can ``kill -9`` the
  process between the files of one checkpoint.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    from app import create_app
    from sentiment.learning import versions

    slow = float(os.environ.get("TEST_SLOW_WRITES") or 0)
    if slow:
        real_write = versions.atomic_write
        events = Path(os.environ["INSTANCE_PATH"]) / "write-events"

        def announced_write(path: Path, data: bytes) -> None:
            with open(events, "a") as fh:
                fh.write(f"{Path(path).name}\n")
            time.sleep(slow)
            real_write(path, data)

        versions.atomic_write = announced_write

    app = create_app()
    learner = app.extensions["learner"]
    learner.start_log_upkeep()  # as a server does (sentiment.serving.process.start_serving)
    learner.start_following()

    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    print(f"PORT {server.effective_port}", flush=True)
    try:
        server.run()
    finally:
        learner.close()


if __name__ == "__main__":
    main()
