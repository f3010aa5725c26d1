"""The Mandarin text front end: normalisation, segmentation and grapheme-to-phoneme."""
