"""One paper style for every figure: seaborn theme, colours, figure sizes and saving as PNG +
PDF at fixed pixel size (no tight bounding box, so a figure of ``size`` inches is exactly
``size * DPI`` pixels). Model names, order and colours come from the variant table
(models/variants.py): ``model_color``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from models import VARIANTS  # noqa: E402

DPI = 200
WIDE = (7.0, 4.0)  # inches: 1400 x 800 px
SQUARE = (5.0, 4.0)  # 1000 x 800 px
GRID = (8.0, 6.0)  # 2 x 2 panels: 1600 x 1200 px
PAIR = (9.0, 3.8)  # 1 x 2 panels: 1800 x 760 px

_BASE = sns.color_palette("colorblind")
LAMBDA0_COLOR = _BASE[3]  # the λ = 0 reference line of the λ figures
PART_COLORS = {"token": _BASE[4], "channel": _BASE[9]}
ACC_LABEL = "test accuracy (%)"
ACC_RANGE = (0.0, 100.0)  # accuracy intervals are clipped to it
LAMBDA_LABEL = "symmetry-breaking penalty λ (log scale)"


def model_color(model: str, default: str = "k") -> tuple[float, float, float] | str:
    """The model's colour in the variant table as an RGB tuple; ``default`` for a model that is
    not in the table."""
    variant = VARIANTS.get(model) if isinstance(model, str) else None
    return default if variant is None else to_rgb(variant.color)


def lambda_color() -> tuple[float, float, float]:
    """The colour of the first variant sb_lambda applies to (AsymMixer): figures about λ."""
    return next(to_rgb(v.color) for v in VARIANTS.values() if v.has_lambda)


def apply_style() -> None:
    """The seaborn/matplotlib settings shared by all figures."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.15,
                  rc={"figure.dpi": DPI, "savefig.dpi": DPI, "axes.titleweight": "bold",
                      "axes.titlesize": 10.5, "figure.titlesize": 12,
                      "figure.titleweight": "bold", "legend.frameon": True,
                      "legend.framealpha": 0.9, "legend.fontsize": 8.5,
                      "pdf.fonttype": 42, "grid.linewidth": 0.6})


def new_figure(size: tuple[float, float] = WIDE, nrows: int = 1, ncols: int = 1,
               **kwargs: object) -> tuple[Figure, object]:
    """A styled figure with constrained layout; returns (figure, axes)."""
    apply_style()
    fig, axes = plt.subplots(nrows, ncols, figsize=size, layout="constrained", **kwargs)
    return fig, axes


def lambda_palette(values: list[float]) -> dict[float, tuple[float, float, float]]:
    """Colours for sb_lambda values: dark (strong penalty, close to SymMixer) to light."""
    colors = sns.color_palette("flare_r", max(len(values), 1))
    return {v: colors[i] for i, v in enumerate(sorted(values, reverse=True))}


def group_palette(groups: list[str]) -> dict[str, tuple[float, float, float]]:
    """Distinct colours for curve groups (depth / width)."""
    colors = sns.color_palette("deep", max(len(groups), 1))
    return {g: colors[i] for i, g in enumerate(groups)}


def fit_text(fig: Figure, text: Text, min_size: float = 6.5) -> float:
    """Shrink ``text`` (a title) until it lies inside the figure's width, down to ``min_size``
    points, then wrap it onto more lines if it still does not fit; returns the font size it
    ends with. Long titles otherwise run past the figure's edges at a fixed pixel size. The
    size is scaled in one step from the measured overflow, then checked (the layout moves
    with it)."""
    renderer = fig.canvas.get_renderer()
    size = float(text.get_fontsize())
    for _ in range(4):
        engine = fig.get_layout_engine()
        if engine is not None and text.axes is not None:  # a figure title stays centred
            engine.execute(fig)
        ext = text.get_window_extent(renderer)
        centre = (ext.x0 + ext.x1) / 2
        room = 2 * min(centre - fig.bbox.x0, fig.bbox.x1 - centre) - 4  # pixels, a margin
        if ext.width <= room:
            break
        if size > min_size:
            size = max(min_size, size * room / ext.width * 0.98)
            text.set_fontsize(size)
        else:  # as small as it gets: break the longest lines
            lines = text.get_text().split("\n")
            chars = max(10, int(max(map(len, lines)) * room / ext.width * 0.95))
            text.set_text("\n".join(textwrap.fill(line, chars) for line in lines))
    return size


def save_figure(fig: Figure, out: Path, name: str) -> list[Path]:
    """Write ``<out>/<name>.png`` (DPI) and ``.pdf``; closes the figure; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return paths
