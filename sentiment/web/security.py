"""What a public web app owes its users' browsers: no cross-site writes, strict headers.

* **Cross-site requests.** A browser on another site can post a form or a
  ``text/plain`` body to this app without any preflight, with its visitor's
  address and cookies. So the JSON API reads only ``application/json`` bodies
  (415 otherwise: a cross-site form cannot send that type without a CORS
  preflight, which this app never grants), and every state-changing request
  whose ``Origin`` names another site, or whose ``Sec-Fetch-Site`` says
  ``cross-site``, is refused with 403. The HTML forms also carry a CSRF token.
* **Headers.** A Content-Security-Policy that allows scripts, styles and images
  from this app only and forbids framing (with ``X-Frame-Options`` for older
  browsers), ``nosniff``, a same-origin referrer, and ``Cache-Control: no-store``
  on every page that holds a review or a token.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, abort, request

from sentiment.web.body import BodyError

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
# Pages whose content may be cached: the plots of the exploration report and
# the static files. Everything else can hold a review, a verdict or a token.
CACHEABLE_ENDPOINTS = frozenset({"static", "explore.plot", "apidocs.asset"})


def _same_site(origin: str) -> bool:
    parts = urlsplit(origin)
    return parts.netloc.lower() == request.host.lower()


def refuse_cross_site() -> None:
    """403 for a state-changing request that a browser says comes from another site."""
    if request.method not in STATE_CHANGING:
        return
    origin = request.headers.get("Origin")
    fetch_site = request.headers.get("Sec-Fetch-Site", "").lower()
    if (origin is not None and origin != "null" and not _same_site(origin)) \
            or origin == "null" or fetch_site == "cross-site":
        abort(403, "Requests from other websites cannot change anything here.")


def json_only() -> None:
    """415 for a JSON API request whose body is not declared ``application/json``."""
    if request.method in STATE_CHANGING and request.path.startswith("/api/") \
            and request.mimetype != "application/json":
        raise BodyError('the request body must be JSON, sent with "Content-Type: '
                        'application/json"', status=415)


def add_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint not in CACHEABLE_ENDPOINTS:
        response.headers["Cache-Control"] = "no-store"
    return response


def install(app: Flask) -> None:
    """Register the checks (before any other: a refused request costs nothing) and headers."""
    app.before_request_funcs.setdefault(None, [])[0:0] = [refuse_cross_site, json_only]
    app.after_request(add_headers)
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:  # Flask sends none by default
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
