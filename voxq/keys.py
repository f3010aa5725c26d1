"""`voxq keys create`: a new API key and its webhook signing secret, printed once, stored nowhere."""
from __future__ import annotations

import re
import secrets

from shared.keys import hash_key, new_key, new_secret
from voxq.errors import CliError

_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def cmd_create(args) -> int:
    tenant = args.tenant or f"tenant-{secrets.token_hex(4)}"
    if not _TENANT.match(tenant):
        raise CliError("--tenant must be 1-64 letters, digits, '_', '.' or '-'")
    for name in ("requests_per_minute", "chars_per_day"):
        if (getattr(args, name) or 0) < 0:
            raise CliError(f"--{name.replace('_', '-')} must be 0 (no limit) or more")
    key, secret = new_key(), new_secret()
    digest = hash_key(key)
    limits = ""
    if args.requests_per_minute is not None:
        limits += f"requests_per_minute = {args.requests_per_minute}\n"
    if args.chars_per_day is not None:
        limits += f"chars_per_day = {args.chars_per_day}\n"
    print(f"""\
API key for tenant {tenant!r} (shown only now; voxq keeps only its hash):

    {key}

Webhook signing secret (shown only now; receivers verify webhooks with it):

    {secret}

Add this entry to the keys file (VOXQ_API_KEYS_FILE, TOML), kept out of the repository:

[[keys]]
tenant = "{tenant}"
sha256 = "{digest}"
{limits}webhook_secrets = ["{secret}"]

Or, for the key alone, add to VOXQ_API_KEYS (comma-separated), and put the secret in
VOXQ_WEBHOOK_SECRETS_FILE as  {tenant} = "{secret}":

    {tenant}:{digest}

Clients send:  Authorization: Bearer {key}""")
    return 0


def add_parser(sub) -> None:
    keys = sub.add_parser("keys", help="create API keys")
    which = keys.add_subparsers(dest="keys", required=True)
    create = which.add_parser("create", help="print a new API key, its hash entry and its webhook secret")
    create.add_argument("--tenant", help="who the key belongs to; its jobs are the tenant's (default: random)")
    create.add_argument("--requests-per-minute", type=int, help="limit for this key (default: the server's)")
    create.add_argument("--chars-per-day", type=int, help="limit for this key (default: the server's)")
    create.set_defaults(func=cmd_create)
