"""The values that analysis options take, torch-free so that the parsers of `s3ta explain` are built
without loading torch. The modules that implement them import them from here.
"""

SUBSTRATES = ("blur", "mean")
"""What insertion/deletion puts in place of deleted pixels (``s3ta.analysis.faithfulness.substrate``)."""
