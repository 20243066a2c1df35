"""Text and tokens: reading and checking a corpus, downloading public-domain ones, the two
tokenizers (characters and byte-level BPE), and the held-out tasks a corpus ships."""
