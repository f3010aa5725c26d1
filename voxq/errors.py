"""The one error a `voxq` command raises for its user: printed by `voxq.cli.main` as one line, exit status 2."""
from __future__ import annotations


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""
