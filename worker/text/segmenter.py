"""Moved to shared/text/segmenter.py (the API's text preview runs it); this name stays for code
written before the move."""
from shared.text.segmenter import Segment, split_segments, words  # noqa: F401
