"""repgeom's dashboard: ``python app.py [--host H] [--port P] ...``, or ``app:server`` for a WSGI server."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Sequence

from repgeom.core.errors import RepgeomError
from repgeom.settings import Settings, parse_settings
from repgeom.ui import create_app


@functools.cache
def _wsgi_app():  # noqa: ANN202 - built once per worker process, on first use (after fork)
    return create_app(Settings.from_env()).server


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: `server` is built lazily
    if name == "server":
        return _wsgi_app()
    raise AttributeError(name)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags and serve with Dash's own server (use a WSGI server in production)."""
    settings = parse_settings(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if settings.debug else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings)
    except RepgeomError as exc:
        print(f"app.py: error: {exc}", file=sys.stderr)
        return 2
    app.run(host=settings.host, port=settings.port, debug=settings.debug)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
