"""`python -m voxq` is the `voxq` command."""
import sys

from voxq.cli import main

sys.exit(main())
