"""Who is calling. Until API keys are configured every caller is the one 'anonymous' tenant."""
from __future__ import annotations


def owner() -> str:
    return "anonymous"


def charge(owner: str, chars: int) -> None:
    """Count characters against the caller's daily limit (no limits without keys)."""
    return None
