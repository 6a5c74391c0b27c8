"""`eligex review`: the workbench as a local web application (Starlette, Jinja2 templates, htmx).

Pages are drawn on the server; htmx (vendored in static/, no build step) boosts links and forms so
that a correction swaps the page without a reload. Every write is a POST carrying the process's
CSRF token and the trial's version (a stale page gets a 409, never a lost update); hosts other than
the one served are refused (DNS rebinding); every text is escaped and a Content-Security-Policy
allows only this server's own scripts.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from extract.errors import EligexError
from extract.review.draft import CorrectionError
from extract.review.forms import FORMS, FormState, row_counts, shown, value_at
from extract.review.workbench import Conflict, Filters, NotFound, Workbench

_HERE = Path(__file__).parent
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _Headers:
    """Security headers on every response; on a problem page, htmx is told to leave the address as it
    was (the page a form was sent from, not the POST's address, which a reload could not show)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def sending(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] += [(k.lower().encode(), v.encode()) for k, v in _HEADERS.items()]
                if message["status"] >= 400:
                    message["headers"].append((b"hx-push-url", b"false"))
            await send(message)

        await self.app(scope, receive, sending)


def create_app(workbench: Workbench, host: str = "127.0.0.1") -> Starlette:
    token = secrets.token_urlsafe(32)
    # Autoescape everything: criteria, quotes and titles are untrusted registry text (the templates'
    # names end in .j2, which Jinja's default selection would not escape).
    environment = Environment(loader=FileSystemLoader(_HERE / "templates"), autoescape=True, undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)  # fmt: skip
    templates = Jinja2Templates(env=environment)
    templates.env.globals.update(csrf=token, forms=FORMS, value_at=value_at, shown=shown)

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        return templates.TemplateResponse(request, name, context, status_code=status)

    def problem(request: Request, status: int, message: str) -> Response:
        return page(request, "problem.html.j2", {"status": status, "message": message}, status)

    async def checked_form(request: Request):
        form = await request.form()
        if not secrets.compare_digest(str(form.get("csrf") or ""), token):
            raise _Refused(403, "this form is not from this server's page (CSRF token missing or wrong): reload the page")
        return form

    async def trials(request: Request) -> Response:
        q = request.query_params
        filters = Filters(
            run=q.get("run") or None, backend=q.get("backend") or None,
            field=q.get("field") if q.get("field") in FORMS else None, gold=q.get("gold", ""),
            reviewed=q.get("reviewed", ""), misses=bool(q.get("misses")), spurious=bool(q.get("spurious")),
            other=bool(q.get("other")), warnings=bool(q.get("warnings")), q=q.get("q", ""),
            sort=q.get("sort", "nct_id"), desc=q.get("desc") == "1",
        )  # fmt: skip
        listing = await run_in_threadpool(workbench.trial_rows, filters)
        query = _query({k: v for k, v in q.items() if k not in ("sort", "desc")})
        return page(request, "trials.html.j2", {"f": filters, "query": query, **listing})

    async def queue(request: Request) -> Response:
        return page(request, "queue.html.j2", {"queue": await run_in_threadpool(workbench.queue)})

    async def next_in_queue(request: Request) -> Response:
        skip = request.query_params.get("skip")
        entries = [e for e in await run_in_threadpool(workbench.queue) if e["nct_id"] != skip]
        if not entries:
            return RedirectResponse("/queue", 303)
        return RedirectResponse(f"/trial/{entries[0]['nct_id']}", 303)

    async def trial(request: Request) -> Response:
        q = request.query_params
        return await trial_page(request, q.get("run") or None, q.get("backend") or None, _open_form(q))

    async def trial_page(request: Request, run: str | None, backend: str | None, open_form: tuple[str, int | None] | None,
                         state: FormState | None = None, status: int = 200) -> Response:  # fmt: skip
        context = await run_in_threadpool(workbench.trial_page, request.path_params["nct_id"], run, backend)
        if open_form is not None and state is None:
            state = workbench.form_state(context, *open_form)
        state = state or FormState()
        context.update(open_form=open_form, state=state, run=run, suffix=_query({"run": run}))
        return page(request, "trial.html.j2", context, status)

    async def correct(request: Request) -> Response:
        nct_id = request.path_params["nct_id"]
        form = await checked_form(request)
        field, action = str(form.get("field") or ""), str(form.get("action") or "")
        if field not in FORMS:
            raise NotFound(f"no field {field!r}")
        index = _index(form.get("index"))
        value = FORMS[field].parse(form, row_counts(form)) if action in ("edit", "add") else None
        run = str(form.get("run") or "") or None
        try:
            await run_in_threadpool(workbench.correct, nct_id, field, action, index, value, str(form.get("version")), run)
        except CorrectionError as error:
            state = FormState({"value": value} if FORMS[field].scalar else value, error.problems)
            return await trial_page(request, run, None, (field, index if action == "edit" else None), state, 422)
        return _back(nct_id, run, f"f-{field}")

    async def reviewed(request: Request) -> Response:
        nct_id = request.path_params["nct_id"]
        form = await checked_form(request)
        run = str(form.get("run") or "") or None
        try:
            await run_in_threadpool(workbench.mark_reviewed, nct_id, str(form.get("source") or ""),
                                    str(form.get("category") or ""), str(form.get("version")), run)  # fmt: skip
        except CorrectionError as error:
            return await trial_page(request, run, None, None, FormState(None, error.problems), 422)
        return _back(nct_id, run, "review")

    async def undo(request: Request) -> Response:
        nct_id = request.path_params["nct_id"]
        form = await checked_form(request)
        run = str(form.get("run") or "") or None
        try:
            await run_in_threadpool(workbench.undo, nct_id, str(form.get("version")))
        except CorrectionError as error:
            return await trial_page(request, run, None, None, FormState(None, error.problems), 422)
        return _back(nct_id, run, "")

    async def not_found(request: Request, error: Exception) -> Response:
        return problem(request, 404, str(error) if isinstance(error, NotFound) else "no such page")

    async def conflict(request: Request, error: Exception) -> Response:
        return problem(request, 409, str(error))

    async def refused(request: Request, error: Exception) -> Response:
        return problem(request, error.status, str(error))

    async def failed(request: Request, error: Exception) -> Response:
        return problem(request, 503, str(error))  # a busy workspace, a gold file that does not validate

    routes = [
        Route("/", trials),
        Route("/queue", queue),
        Route("/queue/next", next_in_queue),
        Route("/trial/{nct_id}", trial),
        Route("/trial/{nct_id}/correct", correct, methods=["POST"]),
        Route("/trial/{nct_id}/reviewed", reviewed, methods=["POST"]),
        Route("/trial/{nct_id}/undo", undo, methods=["POST"]),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    hosts = sorted({host, *LOOPBACK}) if host not in ("0.0.0.0", "::") else ["*"]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_Headers), Middleware(TrustedHostMiddleware, allowed_hosts=hosts)],
        exception_handlers={404: not_found, NotFound: not_found, Conflict: conflict, _Refused: refused, EligexError: failed},
    )


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _index(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _open_form(q) -> tuple[str, int | None] | None:
    """`?edit=labs:2` opens item 2's form, `?add=labs` a new item's."""
    if q.get("add") in FORMS:
        return q["add"], None
    field, _, index = (q.get("edit") or "").partition(":")
    if field in FORMS and index.isdigit():
        return field, int(index)
    return None


def _query(params) -> str:
    return urlencode({k: v for k, v in dict(params).items() if v not in (None, "")})


def _back(nct_id: str, run: str | None, anchor: str) -> RedirectResponse:
    query = f"?{urlencode({'run': run})}" if run else ""
    return RedirectResponse(f"/trial/{nct_id}{query}{'#' + anchor if anchor else ''}", 303)
