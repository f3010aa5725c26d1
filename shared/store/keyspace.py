"""Every Redis key voxq uses, in one place: what each holds, and who owns it (shared/store/*)."""
from __future__ import annotations

PREFIX = "voxq"


def job(job_id: str) -> str:
    """Hash: the job record, its status, progress, result, error and webhook state."""
    return f"{PREFIX}:job:{job_id}"


def job_text(job_id: str) -> str:
    """String: the text to speak, stored apart from the record and never sent through the broker."""
    return f"{PREFIX}:job:{job_id}:text"


def job_plan(job_id: str) -> str:
    """Hash: chunk index -> JSON of the chunk's segments (the job's text, planned; user data)."""
    return f"{PREFIX}:job:{job_id}:plan"


def job_pieces(job_id: str) -> str:
    """Stream: the job's first chunk as it is spoken, piece by piece (shared/store/pieces.py)."""
    return f"{PREFIX}:job:{job_id}:pieces"


def job_chunks_done(job_id: str) -> str:
    """Set: indexes of the job's chunks whose audio has landed."""
    return f"{PREFIX}:job:{job_id}:done"


def tenant_ring(owner: str) -> str:
    """List: the tenant's jobs with chunks not yet dispatched, served round robin."""
    return f"{PREFIX}:tenant:{owner}:ring"


def tenant_in_flight(owner: str) -> str:
    """Sorted set: the tenant's dispatched, unfinished chunks ("job:index") by dispatch time."""
    return f"{PREFIX}:tenant:{owner}:in-flight"


TENANT_PATTERN = f"{PREFIX}:tenant:*"


def tenant_of(key: str) -> str:
    """The tenant a ring or in-flight key belongs to."""
    return key[len(f"{PREFIX}:tenant:"):].rsplit(":", 1)[0]


def owner_index(owner: str) -> str:
    """Sorted set: a tenant's job IDs by creation time, for GET /v1/jobs."""
    return f"{PREFIX}:jobs:{owner}"


OWNER_INDEX_PATTERN = f"{PREFIX}:jobs:*"


def idempotency(owner: str, key_digest: str) -> str:
    """String: the body digest and job ID an Idempotency-Key was first used with."""
    return f"{PREFIX}:idem:{owner}:{key_digest}"


def rate(tenant: str) -> str:
    """String: the tenant's theoretical arrival time (GCRA), in ms."""
    return f"{PREFIX}:rate:{tenant}"


def chars(owner: str, day: str) -> str:
    """Counter: characters the tenant submitted on a UTC day (YYYY-MM-DD)."""
    return f"{PREFIX}:chars:{owner}:{day}"


def cache(digest: str) -> str:
    """String: the ID of a job whose audio answers this request digest."""
    return f"{PREFIX}:cache:{digest}"


def lexicons(owner: str) -> str:
    """Hash: a tenant's pronunciation lexicons, name -> JSON (content, format, entries, sha256).
    No TTL: a lexicon is the tenant's configuration, kept until they delete it."""
    return f"{PREFIX}:lexicons:{owner}"


def lexicon_defaults(owner: str) -> str:
    """String: JSON list of the lexicons a tenant's requests use when they name none."""
    return f"{PREFIX}:lexicon-defaults:{owner}"


def webhook_disabled(owner: str) -> str:
    """Set: digests of callback URLs that answered 410 Gone to this tenant."""
    return f"{PREFIX}:webhook-disabled:{owner}"


def webhook_attempt(job_id: str, generation: int, attempt: int) -> str:
    """String: the claim (then the outcome) of one delivery attempt, so a redelivered message
    never sends twice."""
    return f"{PREFIX}:webhook-attempt:{job_id}:{generation}:{attempt}"


# zset: "<job ID><owner>" -> when the ended job's record expires, so its owner-index entry goes
# with it (shared/store/jobs.py).
RETAINED = f"{PREFIX}:retained"
# zset: job ID -> when it was accepted (then when its first task was last re-sent), for every job
# still queued. A job whose first message was lost (published to a master that lost it in a split
# brain; taken by a worker killed before kombu recorded it unacknowledged) is found here and its
# first task re-sent (worker/runner.py, `redispatch`).
QUEUED = f"{PREFIX}:queued"
WORKERS = f"{PREFIX}:workers"  # zset: worker name -> last heartbeat (unix time)
ENGINES = f"{PREFIX}:engines"  # hash: engine name -> capabilities JSON
WORKER_QUEUES = f"{PREFIX}:worker-queues"  # hash: worker name -> JSON list of queues it consumes


def tenant_live(owner: str) -> str:
    """Sorted set: the tenant's open live sessions -> when their lease runs out (unix time)."""
    return f"{PREFIX}:live:{owner}"


# Sorted set: every open live session ("<session ID><owner>") -> when its lease runs out.
LIVE = f"{PREFIX}:live-sessions"


def lock(name: str) -> str:
    """String: a cluster-wide lock (e.g. one retention sweep per period), holder as value."""
    return f"{PREFIX}:{name}-lock"


# kombu's Redis transport keeps a queue's messages of priority p > 0 in the list "<queue>\x06\x16<p>".
_PRIORITY_SEP = "\x06\x16"


# kombu's Redis transport keeps each delivered, not yet acknowledged message in this hash
# (delivery tag -> [message, exchange, routing key]) until its worker acks it.
BROKER_UNACKED = "unacked"
# ... and when each was delivered (delivery tag -> unix time): kombu hands back to the queue every
# message older than the visibility timeout. A live worker keeps its messages' times fresh
# (worker/leases.py); a dead one's age out and return.
BROKER_UNACKED_INDEX = "unacked_index"


def broker_queue(queue: str, priority: int = 0) -> str:
    """List: a broker queue's messages (kombu's layout), for depth metrics."""
    return queue if priority == 0 else f"{queue}{_PRIORITY_SEP}{priority}"


# String, a second long: what the supervisor writes to learn whether Redis takes writes.
WRITE_PROBE = f"{PREFIX}:probe:writes"

# String, a minute long: what a wait for replicas writes first, so the WAIT that follows on the
# same connection covers every write before it, from any connection (replication is in order).
REPLICA_PROBE = f"{PREFIX}:probe:replicas"
