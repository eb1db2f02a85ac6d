"""Boxes: the part of an image that is read, such as a CT slice's body box.

COVIDx CT gives every slice the bounding box of the body, and COVID-Net CT
crops each slice to it before resizing. A record's `box` is applied first,
before `trim`, equalisation and the resize, wherever the image is read: the
scan, the no-cache path of `tf.data`, `predict` and Grad-CAM overlays. See
`docs/guides/datasets.md`.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from ..errors import DataError

__all__ = ["Box", "box_problem", "crop_to_box"]

#: `(left, top, right, bottom)` in pixels, as `Image.crop` takes it: the
#: right and bottom edges are outside the box.
Box = tuple[int, int, int, int]


def box_problem(box: Sequence[int], size: Sequence[int]) -> str | None:
    """What is wrong with `box` on an image of `size` (`(width, height)`),
    or None when it lies inside the image and holds at least one pixel.

    Examples:
        >>> box_problem((0, 0, 10, 8), (10, 8)) is None
        True
        >>> box_problem((2, 0, 12, 8), (10, 8))
        'the box (2, 0, 12, 8) (left, top, right, bottom) is outside the 10 x 8 image'
    """
    left, top, right, bottom = (int(v) for v in box)
    width, height = int(size[0]), int(size[1])
    shown = f"({left}, {top}, {right}, {bottom}) (left, top, right, bottom)"
    if left >= right or top >= bottom:
        return f"the box {shown} is empty: left must be below right, top below bottom"
    if left < 0 or top < 0 or right > width or bottom > height:
        return f"the box {shown} is outside the {width} x {height} image"
    return None


def crop_to_box(
    image: Image.Image, box: Sequence[int] | None, *, name: str = "the image"
) -> Image.Image:
    """The part of `image` inside `box` (the whole image for None).

    Raises:
        DataError: The box is empty or outside the image; names `name`.

    Examples:
        >>> from PIL import Image
        >>> crop_to_box(Image.new("L", (10, 8)), (2, 1, 6, 7)).size
        (4, 6)
    """
    if box is None:
        return image
    problem = box_problem(box, image.size)
    if problem is not None:
        raise DataError(f"'{name}': {problem}.")
    left, top, right, bottom = (int(v) for v in box)
    return image.crop((left, top, right, bottom))
