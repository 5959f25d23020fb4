"""Starting a worker process: app, wiring, logging, and Faust's worker loop."""

from __future__ import annotations

import faust

from service.agents import wire
from service.app import create_app
from service.logs import configure
from service.settings import Settings


def run_worker(settings: Settings) -> None:
    """Run one worker until SIGTERM/SIGINT; state is recovered from changelogs at start."""
    configure(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    wire(app, settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True,
                          redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()
