"""``trial-adapter console``: serve the reconciliation console.

Binds to 127.0.0.1 unless told otherwise (``[console] bind`` or
``--bind``): the console shows clinical data of the site, so reaching it
from another machine should be a decision, made with a TLS reverse proxy in
front.  Proxy headers (``X-Forwarded-For``, ``X-Forwarded-Proto``) are
believed only from the addresses in ``[console] trusted_proxies`` (empty by
default): the app applies that rule itself (``app.create_app``), so uvicorn's
own proxy handling, which trusts every local process by default, is off.
Otherwise any program on the machine could claim another client address to
the login limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adapter.cli import common
from adapter.demo import site

DemoOption = Annotated[
    bool,
    typer.Option("--demo", help="Use the demo's state in var/demo (run `trial-adapter demo` first)."),
]


def config_or_demo(config_path: Path, demo: bool) -> common.config_mod.Config:
    return site.demo_config(Path("var/demo")) if demo else common.load_config(config_path)


def console(
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    bind: Annotated[
        str | None, typer.Option("--bind", help="Address to listen on (default: [console] bind).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default: [console] port).")] = None,
    demo: DemoOption = False,
) -> None:
    """Serve the reconciliation console for data managers (web pages, log in first).

    Create users with `trial-adapter users add NAME --role data_manager`.
    """
    import uvicorn

    from adapter.web.app import create_app

    with common.reported_errors():
        config = config_or_demo(config_path, demo)
        app = create_app(config)
        host = bind or config.console.bind
        listen = port or config.console.port
        common.err_console.print(f"console on http://{host}:{listen}/ (Ctrl-C stops it)", highlight=False)
        uvicorn.run(
            app,
            host=host,
            port=listen,
            proxy_headers=False,  # the app believes [console] trusted_proxies, and no one else
            forwarded_allow_ips=[],
            log_level="warning",
            access_log=False,
        )
