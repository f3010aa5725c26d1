"""voxq's HTTP API: a thin Flask app that validates jobs and queues them in Redis."""
