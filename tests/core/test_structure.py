"""visualizer._structure: layouts check their fields, and window_positions undoes Swin's partition.

The reference here partitions a grid of token numbers the way each framework does (pad and
roll in its order, then cut windows), in plain Python, and reads the windows back.
"""

import pytest

from visualizer import LayoutError
from visualizer._structure import CHANNELS, TOKENS, Windows, require_tokens, window_positions


def _partition(rows, cols, window, shift, shift_before_pad):
    """Token numbers per window, as timm (roll, then pad) or transformers (pad, then roll) cut them."""
    wh, ww = window
    ph, pw = -(-rows // wh) * wh, -(-cols // ww) * ww
    grid = [[r * cols + c for c in range(cols)] for r in range(rows)]

    def roll(g, h, w):
        return [[g[(y + shift[0]) % h][(x + shift[1]) % w] for x in range(w)] for y in range(h)]

    def pad(g):
        return [[g[y][x] if y < len(g) and x < len(g[0]) else -1 for x in range(pw)] for y in range(ph)]

    g = pad(roll(grid, rows, cols)) if shift_before_pad else roll(pad(grid), ph, pw)
    return [
        [g[r * wh + i][c * ww + j] for i in range(wh) for j in range(ww)]
        for r in range(ph // wh)
        for c in range(pw // ww)
    ]


@pytest.mark.parametrize("shift_before_pad", [False, True])
@pytest.mark.parametrize(
    ("rows", "cols", "window", "shift"),
    [(4, 4, (2, 2), (0, 0)), (4, 4, (2, 2), (1, 1)), (5, 7, (3, 3), (1, 1)), (3, 5, (2, 4), (1, 2))],
)
def test_window_positions_undo_the_partition(rows, cols, window, shift, shift_before_pad):
    grid = (-(-rows // window[0]), -(-cols // window[1]))
    layout = Windows(
        window=window, grid=grid, shift=shift, tokens=(rows, cols), shift_before_pad=shift_before_pad
    )
    assert window_positions(layout) == _partition(rows, cols, window, shift, shift_before_pad)
    every = sorted(p for w in window_positions(layout) for p in w if p >= 0)
    assert every == list(range(rows * cols))  # each token in exactly one window


def test_layouts_check_their_fields_and_readers_refuse_what_is_not_tokens():
    with pytest.raises(ValueError, match="window"):
        Windows(window=(0, 2), grid=(1, 1))
    with pytest.raises(ValueError, match="does not fit"):
        Windows(window=(2, 2), grid=(1, 1), tokens=(3, 2))
    require_tokens(TOKENS, "x")
    with pytest.raises(LayoutError, match=r"has layout windows .*maps.scatter"):
        require_tokens(Windows(window=(2, 2), grid=(1, 1)), "rollout(maps)")
    with pytest.raises(LayoutError, match="channels"):
        require_tokens(CHANNELS, "rollout(maps)")
