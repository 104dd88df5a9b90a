"""``trial-adapter run``: the scheduled service (see ``adapter.service.daemon``)."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from adapter.cli import common
from adapter.service import daemon, process

ListenOption = Annotated[
    str | None,
    typer.Option(
        "--listen",
        envvar="TRIAL_ADAPTER_LISTEN",
        help="HOST:PORT of the health and metrics endpoint (default: service.listen in the config).",
    ),
]


def run(config_path: common.ConfigOption = common.DEFAULT_CONFIG, listen: ListenOption = None) -> None:
    """Run unattended: sync every site on its schedule, deliver, serve /healthz, /readyz, /metrics.

    Each site syncs on [schedule] sync_interval_minutes (or sync_cron), with
    a full sweep on sweep_cron and outbox deliveries in between.  SIGTERM or
    Ctrl-C finishes the current page and exits 0; SIGHUP re-reads the config.
    Use --log-level info to log every job.
    """
    with common.reported_errors():
        process.route_scheduler_logs()
        service = daemon.Service(lambda: common.load_config(config_path), listen=listen)
        process.install_signal_handlers(service.request_stop, service.request_reload)
        service.start()
        if common.err_console.is_terminal:
            common.err_console.print(
                f"trial-adapter is running {len(service.config.sites)} site(s); "
                f"health and metrics on http://{service.health_address}/ ; Ctrl-C stops it",
                highlight=False,
            )
        stopped = service.serve()
    if not stopped.clean:
        # A pass is stuck in I/O past the deadline; its thread cannot be joined, so leave now.
        logging.shutdown()
        os._exit(stopped.exit_code)
    raise typer.Exit(stopped.exit_code)
