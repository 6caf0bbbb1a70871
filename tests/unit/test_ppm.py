"""A PPM screenshot (libvirt's) becomes a PNG that Pillow reads back pixel for pixel."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from vmdesk.core.errors import EngineError
from vmdesk.display import ppm


def test_a_ppm_becomes_the_same_picture_as_png() -> None:
    width, height = 7, 3
    pixels = b"".join(bytes((x * 30 + y, y * 80, x + y)) for y in range(height)
                      for x in range(width))  # fmt: skip
    source = b"P6\n# a comment\n7 3\n255\n" + pixels
    image = Image.open(io.BytesIO(ppm.to_png(source)))
    assert image.format == "PNG" and image.size == (width, height) and image.mode == "RGB"
    assert image.tobytes() == pixels


@pytest.mark.parametrize("data", [b"", b"P3\n1 1\n255\n0 0 0", b"P6\n2 2\n255\n\x00\x00"])
def test_what_is_not_a_whole_binary_ppm_is_refused(data: bytes) -> None:
    with pytest.raises(EngineError):
        ppm.to_png(data)
