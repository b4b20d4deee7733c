"""The tag stage, the only code that touches ID3.

- :mod:`fetcher.tagging.spec`: pure decisions (which images, the chapter timeline, the
  fingerprint); no mutagen, so planning may import it.
- :mod:`fetcher.tagging.frames`: the mutagen frames, encoded in fetcher's order.
- :mod:`fetcher.tagging.writer`: the write into a file, in place or by rewrite.

This package's ``__init__`` imports nothing, so importing ``fetcher.tagging.spec`` does
not load mutagen.
"""
