"""``trial-adapter demo`` and ``demo-data``: the pipeline on synthetic sites, and their data.

``demo`` needs no server and no config: it syncs the bundled demo sites
(``adapter.demo.site``) into a state file and a file repository.
``demo-data`` writes those sites' files (``adapter.demo.generator``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adapter.cli import common, report
from adapter.cli.sync_cmd import run_with_progress
from adapter.demo import generator, site


def demo(
    workdir: Annotated[
        Path, typer.Option("--workdir", "-w", help="Where the demo keeps its state database and repository.")
    ] = Path("var/demo"),
    full: Annotated[bool, typer.Option("--full", help="Re-map every resource, even unchanged ones.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run the whole pipeline on the bundled demo sites (no server needed).

    Syncs the two synthetic sites shipped with the package into a SQLite state
    file, delivers the protocol records to a file repository, and prints what
    happened.  Run it twice: the second run finds nothing new and sends nothing.
    """
    with common.reported_errors():
        config = site.demo_config(workdir)
        result = run_with_progress(config, config.sites, full=full, quiet=quiet)
        report.print_summary(config, result)


def demo_data(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the demo sites into.")],
    patients: Annotated[int, typer.Option("--patients", min=1, help="Patients per site.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same files.")] = 7,
) -> None:
    """Generate synthetic demo site data (FHIR R4 NDJSON + roster) deterministically.

    The bundled demo data set is this command's output with the defaults
    (`--out adapter/demo/data`); regenerate it, never edit it by hand.
    """
    result = generator.generate(out, patients_per_site=patients, seed=seed)
    common.console.print(f"wrote demo sites to {out}: {result}")
