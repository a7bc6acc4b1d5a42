"""Pictures of what agents attend to: attention overlays (``overlay``), videos (``video``), still
figures (``figure``) and the self-contained interactive HTML viewer (``viewer``). Everything here
reads recordings (``s3ta.analysis.recording``) and never the model.
"""

from s3ta.viz.figure import save_attention_figure
from s3ta.viz.video import write_video

__all__ = ["save_attention_figure", "write_video", "write_viewer"]


def write_viewer(*args, **kwargs):
    """See ``s3ta.viz.viewer.write_viewer``."""
    from s3ta.viz.viewer import write_viewer as write

    return write(*args, **kwargs)
