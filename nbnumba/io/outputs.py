"""The output layer: formats, frames and the transaction that writes them.

One import for the commands::

    from nbnumba.io.outputs import Frame, OutputSet, get_writer

    frame = Frame.from_result(result, intfile_scale=0.0, adc_offset=40.0)
    with OutputSet(inputs=[hkl_path]) as out:
        out.add_frame("image.img", "smv", frame)
        out.add_frame("image.bin", "float", frame)
        out.commit()

See :mod:`nbnumba.io._atomic` for what the transaction guarantees and
:mod:`nbnumba.io.registry` for adding a format.
"""

from __future__ import annotations

from nbnumba.io._atomic import OutputSet as _BaseOutputSet
from nbnumba.io._atomic import Written, atomic_write, check_outputs, is_stream, remove_stale_temporaries
from nbnumba.io.frame import Frame, NoiseImage, integer_image
from nbnumba.io.registry import Writer, format_names, get_writer, register_writer

__all__ = [
    "Frame",
    "NoiseImage",
    "OutputSet",
    "Writer",
    "Written",
    "atomic_write",
    "check_outputs",
    "format_names",
    "get_writer",
    "integer_image",
    "is_stream",
    "register_writer",
    "remove_stale_temporaries",
]


class OutputSet(_BaseOutputSet):
    """:class:`nbnumba.io._atomic.OutputSet` that also writes registered formats."""

    def add_frame(self, path, fmt: str, frame: Frame) -> None:
        """Add `frame` written in format `fmt` (a registry name) at `path`.

        Parameters
        ----------
        path : str or os.PathLike
            Output file.
        fmt : str
            Format name (see :func:`format_names`).
        frame : Frame
            The rendered frame.
        """
        writer = get_writer(fmt)
        self.add(path, lambda: writer(frame))
