"""Task and queue names: the only contract between the API and the workers over the broker."""

SYNTHESIZE = "voxq.synthesize"
DELIVER_WEBHOOK = "voxq.deliver_webhook"

INTERACTIVE = "interactive"
BATCH = "batch"
WEBHOOKS = "webhooks"
GPU_INTERACTIVE = "gpu-interactive"
GPU_BATCH = "gpu-batch"

QUEUE_FOR_PRIORITY = {"interactive": INTERACTIVE, "batch": BATCH}
GPU_QUEUE_FOR_PRIORITY = {"interactive": GPU_INTERACTIVE, "batch": GPU_BATCH}
SYNTHESIS_QUEUES = (INTERACTIVE, BATCH, GPU_INTERACTIVE, GPU_BATCH)
