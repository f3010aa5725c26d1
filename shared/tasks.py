"""Task and queue names, routing and publishing: the only contract between the API and the workers
over the broker."""

# A job's first task: plan it into chunks, dispatch the next ones, and speak chunk 0 itself.
SYNTHESIZE = "voxq.synthesize"
# Every later chunk of a job: args (job ID, chunk index, owner).
SYNTHESIZE_CHUNK = "voxq.synthesize_chunk"
DELIVER_WEBHOOK = "voxq.deliver_webhook"

INTERACTIVE = "interactive"
BATCH = "batch"
WEBHOOKS = "webhooks"
GPU_INTERACTIVE = "gpu-interactive"
GPU_BATCH = "gpu-batch"

QUEUE_FOR_PRIORITY = {"interactive": INTERACTIVE, "batch": BATCH}
GPU_QUEUE_FOR_PRIORITY = {"interactive": GPU_INTERACTIVE, "batch": GPU_BATCH}
SYNTHESIS_QUEUES = (INTERACTIVE, BATCH, GPU_INTERACTIVE, GPU_BATCH)

# Message priorities within a queue (kombu's Redis transport serves 0 first, then 3, 6, 9).
# A job's first task outranks the continuation chunks of jobs already running, so a short job
# waits for the chunks being spoken right now, never behind a long job's queue of chunks.
FIRST_CHUNK_PRIORITY = 0
# A live session's sentence spoken ahead, while the one before it still plays: after every first
# chunk a listener is waiting for, before the continuation of long jobs (api/live_session.py).
LOOKAHEAD_PRIORITY = 3
CONTINUATION_PRIORITY = 6


def route(priority: str, alive_queues: set[str]) -> str:
    """The queue for work of this priority: a live GPU pool's (it finishes work soonest), else the CPU one."""
    gpu = GPU_QUEUE_FOR_PRIORITY[priority]
    return gpu if gpu in alive_queues else QUEUE_FOR_PRIORITY[priority]


# Publishing: one function per task kind. Only IDs travel through the broker, and Flower shows
# them as the tasks' arguments; the text, the user's data, stays in the store and never enters
# the broker or Flower (argsrepr). retry=False: a broker that is away is the caller's to answer.
# time_limit: the task's hang bound (JobSettings.hang_bound_s), Celery's hard time limit for it.
def send_job(celery, job_id: str, queue: str, time_limit: int | None = None,
             priority: int = FIRST_CHUNK_PRIORITY) -> None:
    celery.send_task(SYNTHESIZE, args=[job_id], queue=queue, priority=priority,
                     argsrepr=repr([job_id]), kwargsrepr="{}", retry=False, time_limit=time_limit)


def send_first_task(celery, store, settings, job_id: str, priority: str, text_chars: int,
                    message_priority: int = FIRST_CHUNK_PRIORITY) -> None:
    """A job's first task, to the queue a live pool of its priority serves, with its hang bound:
    the API sends it once for a job accepted, and the redispatch again for a job whose message was
    lost (worker/runner.py). The same message either way; a duplicate is skipped (Runner.run)."""
    queue = store.workers.queue_for(priority, settings.jobs.heartbeat_ttl_s)
    send_job(celery, job_id, queue, time_limit=settings.jobs.first_task_bound_s(text_chars, settings.text.first_chunk_s),
             priority=message_priority)


def send_chunk(celery, job_id: str, index: int, owner: str, queue: str, time_limit: int | None = None) -> None:
    celery.send_task(SYNTHESIZE_CHUNK, args=[job_id, index, owner], queue=queue or INTERACTIVE,
                     priority=CONTINUATION_PRIORITY, argsrepr=repr([job_id, index]), kwargsrepr="{}", retry=False,
                     time_limit=time_limit)


def send_webhook(celery, job_id: str, webhook_id: str, generation: int, countdown: float | None) -> None:
    celery.send_task(DELIVER_WEBHOOK, args=[job_id, webhook_id, generation], queue=WEBHOOKS,
                     countdown=countdown or None, argsrepr=repr([job_id]), kwargsrepr="{}", retry=False)
