"""`voxq up`: the whole cluster on one machine (placeholder until the cluster lands)."""


def add_parser(sub) -> None:
    return None
