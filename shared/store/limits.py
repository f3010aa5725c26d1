"""Per-tenant limits kept in Redis, so every API process of the cluster shares them."""
from __future__ import annotations

from shared.store import keyspace

# Generic cell rate algorithm: a burst of up to `limit` requests, then one per period/limit.
# One key per tenant holding the theoretical arrival time; the answer is how long to wait (ms).
_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[1])
local interval = math.max(1, math.floor(period / tonumber(ARGV[2])))
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - period > now then return new_tat - period - now end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return 0
"""

# Characters per UTC day: add only if the sum stays within the limit; the answer is the new sum,
# or -1 when refused.
_CHARS = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return -1 end
used = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 172800)
return used
"""


class LimitStore:
    def __init__(self, client):
        self._rate = client.register_script(_RATE)
        self._chars = client.register_script(_CHARS)

    def wait_ms(self, tenant: str, per_minute: int) -> int:
        """0 if the request may go now, else how many ms until it may."""
        return int(self._rate(keys=[keyspace.rate(tenant)], args=[60_000, per_minute]))

    def add_chars(self, owner: str, day: str, chars: int, limit: int) -> bool:
        """Count `chars` for the day if the total stays within `limit`; False (nothing counted) if not."""
        return int(self._chars(keys=[keyspace.chars(owner, day)], args=[chars, limit])) >= 0
