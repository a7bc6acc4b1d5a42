"""The values that analysis options take, torch-free so that the parsers of `s3ta explain` are built
without loading torch. The modules that implement them import them from here.
"""

SUBSTRATES = ("blur", "mean")
"""What insertion/deletion puts in place of deleted pixels (``s3ta.analysis.faithfulness.substrate``)."""

TOPK_SUBSTRATES = ("blur", "mean", "plate", "cell-mode")
"""What top-k cell deletion puts in place of the deleted cells (``s3ta.analysis.faithfulness_topk.fill``):
the two above, the recording's median frame ("plate") or each cell's most frequent colour ("cell-mode")."""
