"""The voice side of the text front end: pinyin to the Baker voice's symbols (the rest is in shared/text)."""
