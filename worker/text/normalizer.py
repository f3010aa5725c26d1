"""Moved to shared/text/normalizer.py (the API's text preview runs it); this name stays for code
written before the move."""
from shared.text.normalizer import normalize  # noqa: F401
