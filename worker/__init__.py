"""voxq workers: the Celery app, its tasks, and the speech engines they run."""
