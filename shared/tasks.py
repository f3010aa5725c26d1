"""Task and queue names: the only contract between the API and the workers over the broker."""

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
CONTINUATION_PRIORITY = 6


def route(priority: str, alive_queues: set[str]) -> str:
    """The queue for work of this priority: a live GPU pool's (it finishes work soonest), else the CPU one."""
    gpu = GPU_QUEUE_FOR_PRIORITY[priority]
    return gpu if gpu in alive_queues else QUEUE_FOR_PRIORITY[priority]
