"""What a framework declares about each captured attention: role, kind, block and layout.

>>> maps.info("layers.1.blocks.0.attn")
LayerInfo(path='layers.1.blocks.0.attn', index=3, role=None, kind='self', block='layers.1.blocks.0',
          depth=3, layout=Windows(window=(7, 7), grid=(2, 2), shift=(0, 0), tokens=(14, 14)), ...)

A map's **layout** says what its dimensions are:

- :data:`TOKENS`: (batch, heads, queries, keys), queries and keys being tokens;
- :class:`Windows`: (batch x windows, heads, window tokens, window tokens), Swin's windowed
  attention; the layout holds what is needed to put each window back on the token grid;
- :data:`CHANNELS`: (batch, heads, channels, channels), XCiT's cross-covariance attention.

Adapters fill these in from the framework's own classes and configs, never from words in
a module path. Pure Python: nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from visualizer._errors import LayoutError

__all__ = [
    "CHANNELS",
    "KINDS",
    "ROLES",
    "TOKENS",
    "Channels",
    "LayerInfo",
    "Layout",
    "Tokens",
    "Windows",
    "require_tokens",
    "window_positions",
]

#: An attention's place in an encoder-decoder model; None where the model has one stack.
ROLES = ("encoder", "decoder", None)
#: Self-attention (queries and keys from one sequence) or cross-attention (keys from another).
KINDS = ("self", "cross")


@dataclasses.dataclass(frozen=True)
class Tokens:
    """(batch, heads, queries, keys): every row is a query token, every column a key token.

    For images, the capture also says how the keys lie on the image, per call, from what ran
    (the patch grid the model's patch embedding produced for that input, and how many keys
    came before the patches):

    - ``grid``: (rows, cols) of patches, row-major after the prefix; None where the keys are
      not image patches (text, or a layer whose keys the capture could not place);
    - ``prefix``: the tokens before the patches (class, register, distillation tokens), 0
      without a grid.

    >>> Tokens(prefix=5, grid=(16, 16)).describe()    # DINOv2 with 4 registers at 224 px
    'tokens (batch, heads, queries, keys); keys: 5 prefix tokens, then 16 x 16 patches'
    """

    prefix: int = 0
    grid: tuple[int, int] | None = None

    name: ClassVar[str] = "tokens"

    def __post_init__(self) -> None:
        if isinstance(self.prefix, bool) or not isinstance(self.prefix, int) or self.prefix < 0:
            raise ValueError(f"Tokens.prefix must be an int >= 0, not {self.prefix!r}")
        if self.grid is not None:
            grid = self.grid
            if len(grid) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in grid
            ):
                raise ValueError(f"Tokens.grid must be None or two positive ints (rows, cols), not {grid!r}")
            object.__setattr__(self, "grid", (int(grid[0]), int(grid[1])))
        elif self.prefix:
            raise ValueError(
                f"Tokens.prefix ({self.prefix}) needs a grid: it counts the tokens before patches"
            )

    @property
    def keys(self) -> int | None:
        """How many keys the geometry accounts for (prefix + rows x cols), or None without a grid."""
        return None if self.grid is None else self.prefix + self.grid[0] * self.grid[1]

    def describe(self) -> str:
        if self.grid is None:
            return "tokens (batch, heads, queries, keys)"
        rows, cols = self.grid
        keys = f"{self.prefix} prefix tokens, then {rows} x {cols} patches"
        return f"tokens (batch, heads, queries, keys); keys: {keys}"


@dataclasses.dataclass(frozen=True)
class Channels:
    """(batch, heads, channels, channels): attention between feature channels (XCiT), not tokens."""

    name: ClassVar[str] = "channels"

    def describe(self) -> str:
        return "channels (batch, heads, channels, channels): attention between feature channels, not tokens"


@dataclasses.dataclass(frozen=True)
class Windows:
    """(batch x windows, heads, window tokens, window tokens): attention inside local windows.

    The token grid (``tokens``, rows x cols) is padded at the bottom and right to
    ``grid`` windows of ``window`` tokens each, rolled by ``-shift`` (Swin's cyclic shift),
    then cut into windows, row-major, image after image; tokens inside a window are row-major
    too. With ``shift_before_pad`` (timm's order) the unpadded grid is rolled first and padded
    after (transformers pads first). :func:`window_positions` undoes either.
    """

    window: tuple[int, int]
    grid: tuple[int, int]
    shift: tuple[int, int] = (0, 0)
    tokens: tuple[int, int] | None = None  # unpadded; None: exactly grid x window
    shift_before_pad: bool = False

    name: ClassVar[str] = "windows"

    def __post_init__(self) -> None:
        for field in ("window", "grid", "shift"):
            value = getattr(self, field)
            if len(value) != 2 or not all(isinstance(v, int) and v >= 0 for v in value):
                raise ValueError(f"Windows.{field} must be two non-negative ints, not {value!r}")
        if min(self.window) < 1 or min(self.grid) < 1:
            raise ValueError(f"Windows needs windows and a grid of at least 1 x 1, not {self}")
        padded = self.padded
        if self.tokens is not None and not (
            0 < self.tokens[0] <= padded[0] and 0 < self.tokens[1] <= padded[1]
        ):
            raise ValueError(f"Windows.tokens {self.tokens} does not fit the padded grid {padded}")

    @property
    def padded(self) -> tuple[int, int]:
        """The token grid after padding: grid x window."""
        return (self.grid[0] * self.window[0], self.grid[1] * self.window[1])

    @property
    def size(self) -> tuple[int, int]:
        """The token grid before padding (rows, cols)."""
        return self.tokens if self.tokens is not None else self.padded

    @property
    def windows(self) -> int:
        """Windows per image."""
        return self.grid[0] * self.grid[1]

    def describe(self) -> str:
        shift = f", shifted by {self.shift}" if any(self.shift) else ""
        return (
            f"windows ({self.window[0]}x{self.window[1]} tokens, {self.grid[0]}x{self.grid[1]} windows per "
            f"image{shift}, on a {self.size[0]}x{self.size[1]} token grid)"
        )


Layout = Tokens | Windows | Channels

TOKENS = Tokens()
CHANNELS = Channels()


def window_positions(layout: Windows) -> list[list[int]]:
    """For each window (row-major), the token index (row-major on the unpadded grid) of each of its
    tokens, or -1 for padding.

    >>> window_positions(Windows(window=(1, 2), grid=(1, 2)))
    [[0, 1], [2, 3]]
    """
    (wh, ww), (gh, gw), (sh, sw) = layout.window, layout.grid, layout.shift
    ph, pw = layout.padded
    rows, cols = layout.size
    positions = []
    for r in range(gh):
        for c in range(gw):
            window = []
            for i in range(wh):
                for j in range(ww):
                    y, x = r * wh + i, c * ww + j  # on the padded, rolled grid
                    if layout.shift_before_pad:  # rolled on the unpadded grid, then padded
                        if y >= rows or x >= cols:
                            window.append(-1)
                            continue
                        y, x = (y + sh) % rows, (x + sw) % cols
                    else:  # padded, then rolled: undo the roll on the padded grid
                        y, x = (y + sh) % ph, (x + sw) % pw
                    window.append(y * cols + x if y < rows and x < cols else -1)
            positions.append(window)
    return positions


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """What the capture knows of one attention module (or one get_local function).

    path: the module path (a get_local key for a function no module runs).
    index: its position among all attention modules found in the model, in model order,
        whichever layers were selected.
    role: ``"encoder"`` or ``"decoder"`` in an encoder-decoder model, as the framework
        declares it; None where the model has a single stack.
    kind: ``"self"`` or ``"cross"``, as the framework declares it (None for plain maps that
        were given none, :meth:`AttentionMaps.from_arrays`).
    block: the path of the block (layer) it belongs to; a decoder block holds its self- and
        cross-attention.
    depth: the block's position among the blocks of the same role, from 0.
    layout: what the map's dimensions are (:data:`TOKENS`, :class:`Windows`, :data:`CHANNELS`);
        for windows, that of the last call.
    adapter: which adapter captured it (``"transformers"``, ``"timm"``, ``"torch"``, ``"get_local"``).
    calls: how many calls are kept.
    module: False for a get_local function recorded wherever it runs.
    rebuilt: True where the module kept its own kernel and the map is rebuilt on demand from
        the queries, keys and masks it received; False where the map was computed eagerly and
        kept (for a layer whose calls went both ways, that of the last call).
    eager_reason: why the map was not rebuilt (None where it was).
    """

    path: str
    index: int
    role: str | None
    kind: str | None
    block: str
    depth: int
    layout: Layout
    adapter: str
    calls: int = 0
    module: bool = True
    rebuilt: bool = False
    eager_reason: str | None = None


def require_tokens(layout: Layout, what: str) -> None:
    """Raise :class:`LayoutError` unless ``layout`` is tokens; ``what`` names the map and the caller."""
    if isinstance(layout, Tokens):
        return
    if isinstance(layout, Windows):
        fix = (
            "Put the windows back on the token grid first with maps.scatter(name) (zeros outside each "
            "window, the shift undone), or select token-attention layers with capture_attention(layers=...)."
        )
    else:
        fix = (
            "It has no token-to-token map to plot or analyse; select token-attention layers with "
            "capture_attention(layers=...)."
        )
    raise LayoutError(f"{what} has layout {layout.describe()}, which needs tokens. {fix}")
