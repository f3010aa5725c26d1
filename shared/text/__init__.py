"""The Mandarin text front end the API and the workers share: SSML and lexicons applied,
normalisation, segmentation and pinyin. No model stack: the voice's symbols stay in worker/text/g2p.py."""
