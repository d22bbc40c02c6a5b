"""The live web dashboard (``lanscope web``; also served by ``lanscope run``).

Server-rendered pages (Starlette + Jinja2, autoescaped) with partial updates
(vendored htmx) and server-sent events fed from the bus. It reads through the
one bounded, read-only query path (``lanscope.query``, else the DuckDB file
read-only) and writes nothing but "probe now" requests to the bus.

This package's ``__init__`` stays import-free: ``lanscope.config`` imports
``lanscope.web.config`` and must not pay for Starlette.
"""
