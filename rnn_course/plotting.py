"""Figures the chapters draw: the memory cell with its loop (chapter 2), the unrolled
network for any length and depth (chapter 3), gradient norms over time and an offline
interactive player for animated figures (chapter 4).

Every figure is drawn with matplotlib from numbers, so changing a length or a layer
count in a chapter redraws the picture. Each function takes an optional ``ax`` and
returns it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .validate import require_positive_int

CELL_COLOUR = "#cfe3f6"
INPUT_COLOUR = "#fde9c9"
OUTPUT_COLOUR = "#d7f0d2"
UNROLLED_SPACING = (1.7, 1.1)
"""(dx, dy): draw_unrolled puts cell (step t, layer l) at (t * dx, l * dy), inputs at y
= 0, outputs one row above the top layer; cell boxes are 0.8 wide and 0.5 high. Chapter
4 draws on top of
it."""


def _box(ax, x, y, text, colour, width=0.8, height=0.5, fontsize=11):
    ax.add_patch(
        FancyBboxPatch(
            (x - width / 2, y - height / 2),
            width,
            height,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=colour,
            edgecolor="#333",
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(
    ax,
    start,
    end,
    label=None,
    colour="#333",
    curve=0.0,
    label_offset=(0.0, 0.12),
    fontsize=9,
):
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=12,
            color=colour,
            lw=1.3,
            connectionstyle=f"arc3,rad={curve}",
            shrinkA=0,
            shrinkB=0,
        )
    )
    if label:
        ax.text(
            (start[0] + end[0]) / 2 + label_offset[0],
            (start[1] + end[1]) / 2 + label_offset[1],
            label,
            ha="center",
            va="center",
            fontsize=fontsize,
            color=colour,
        )


def draw_memory_cell(ax=None, fontsize: int = 14):
    """The folded picture (chapter 2): one cell, hₜ = tanh(hₜ₋₁W_hᵀ + xₜW_xᵀ + b), whose
    output
    loops back as its input at the next step. Labels are ``fontsize`` points."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.2))
    small = fontsize - 2
    _box(ax, 0, 1.3, r"$x_t$", INPUT_COLOUR, fontsize=fontsize)
    _box(ax, 0, 0, "tanh", CELL_COLOUR, width=1.0, height=0.7, fontsize=fontsize)
    _box(ax, 0, -1.3, r"$h_t$", OUTPUT_COLOUR, fontsize=fontsize)
    _box(ax, -1.25, 0, r"$b$", "#eeeeee", width=0.5, height=0.45, fontsize=fontsize)
    _arrow(ax, (0, 1.05), (0, 0.35), r"$W_x$", label_offset=(0.3, 0), fontsize=small)
    _arrow(ax, (-1.0, 0), (-0.5, 0))
    _arrow(ax, (0, -0.35), (0, -1.05))
    ax.add_patch(
        FancyArrowPatch(
            (0.4, -1.3),
            (0.5, 0.1),
            arrowstyle="-|>",
            mutation_scale=12,
            color="#b03030",
            lw=1.3,
            connectionstyle="arc3,rad=0.9",
        )
    )
    ax.text(
        1.4,
        -0.55,
        r"$W_h$" + "\n" + r"$h_{t-1}$",
        ha="center",
        va="center",
        fontsize=small,
        color="#b03030",
    )
    ax.set_xlim(-1.6, 1.9)
    ax.set_ylim(-1.8, 1.8)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def draw_unrolled(
    seq_len: int, num_layers: int = 1, ax=None, show_outputs: bool = True
):
    """The RNN unrolled over ``seq_len`` steps with ``num_layers`` stacked layers.

    Cell boxes in one row share the same weights (labelled once per layer); horizontal
    arrows carry hidden states through time, vertical ones carry each layer's states up
    to the next.
    """
    require_positive_int(seq_len, "seq_len")
    require_positive_int(num_layers, "num_layers")
    dx, dy = (
        # distance between steps and between rows (cell boxes are 0.8 x 0.5)
        UNROLLED_SPACING
    )
    label_x = (
        seq_len + 1.2
    ) * dx  # where the weights' labels start, right of h_T's arrow
    x_range = 0.6 + label_x + 4.8  # h0 on the left, the weights' labels on the right
    y_range = (num_layers + show_outputs) * dy + 1.0
    if ax is None:
        _, ax = plt.subplots(
            figsize=(0.62 * x_range, 0.62 * y_range)
        )  # one data unit = 0.62 inch
    for t in range(1, seq_len + 1):
        _box(ax, t * dx, 0, f"$x_{{{t}}}$", INPUT_COLOUR)
        _arrow(ax, (t * dx, 0.25), (t * dx, dy - 0.25))
    for layer in range(1, num_layers + 1):
        y = layer * dy
        superscript = f"^{{({layer})}}" if num_layers > 1 else ""
        _box(ax, 0, y, f"$h_0{superscript}$", "#eeeeee", width=0.75)
        _arrow(ax, (0.375, y), (dx - 0.4, y))
        for t in range(1, seq_len + 1):
            _box(ax, t * dx, y, "cell", CELL_COLOUR)
            # h_t leaves to the right: into the next step, or out of the network after
            # the last
            _arrow(ax, (t * dx + 0.4, y), ((t + 1) * dx - 0.4, y))
            ax.text(
                (t + 0.5) * dx,
                y + 0.1,
                f"$h_{{{t}}}{superscript}$",
                ha="center",
                va="bottom",
                fontsize=9,
                color="#333",
            )  # above its arrow, whatever its height
            if (
                layer < num_layers
            ):  # h_t of this layer is the next layer's input at step t
                _arrow(ax, (t * dx, y + 0.25), (t * dx, y + dy - 0.25))
                ax.text(
                    t * dx + 0.08,
                    y + dy / 2,
                    f"$h_{{{t}}}{superscript}$",
                    ha="left",
                    va="center",
                    fontsize=8,
                    color="#555",
                )
        weights = (
            f"$W_x{superscript}, W_h{superscript}, b{superscript}$ shared by every step"
        )
        ax.text(
            label_x, y, weights, ha="left", va="center", fontsize=9, color="#1f4e79"
        )
    top = num_layers * dy
    if show_outputs:
        for t in range(1, seq_len + 1):
            _box(ax, t * dx, top + dy, f"$y_{{{t}}}$", OUTPUT_COLOUR)
            _arrow(ax, (t * dx, top + 0.25), (t * dx, top + dy - 0.25))
    ax.set_xlim(-0.6, x_range - 0.6)
    ax.set_ylim(-0.5, top + (dy if show_outputs else 0) + 0.5)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


LINE_STYLES = [
    ("o", "-"),
    ("s", "--"),
    ("^", "-."),
    ("D", ":"),
    ("v", "-"),
    ("x", "--"),
]
"""(marker, line style) pairs that tell lines apart without colour, in plotting order.
"""


def plot_gradient_norms(
    norms_by_label: dict, ax=None, log_scale: bool = True, title: str | None = None
):
    """‖dL/dhₜ‖ against the step t (chapter 4), one line per setting (e.g. per spectral
    radius
    of W_h); lines differ by marker and line style as well as colour."""
    if not norms_by_label:
        raise ValueError(
            "norms_by_label is empty: give at least one {label: norms over time}"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for index, (label, norms) in enumerate(norms_by_label.items()):
        values = [float(v) for v in norms]
        marker, style = LINE_STYLES[index % len(LINE_STYLES)]
        ax.plot(
            range(1, len(values) + 1),
            values,
            marker=marker,
            ls=style,
            markersize=3,
            label=str(label),
        )
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel(r"$\|dL / dh_t\|$")
    ax.set_title(title or "gradient reaching each hidden state (loss at the last step)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


_BUTTON_TEXT = {
    "fa fa-minus": "slower",
    "fa fa-fast-backward": "|&lt;",
    "fa fa-step-backward": "&lt;",
    "fa fa-play fa-flip-horizontal": "&lt;&lt;",
    "fa fa-pause": "pause",
    "fa fa-play": "play",
    "fa fa-step-forward": "&gt;",
    "fa fa-fast-forward": "&gt;|",
    "fa fa-plus": "faster",
}


def animation_html(animation, alt: str) -> str:
    """An interactive figure for a static, offline page (chapter 4): matplotlib's
    JavaScript player (``to_jshtml``: one PNG per frame, a slider and buttons), with a
    text alternative on the image, and text on the buttons instead of icons from a web
    font that would be fetched
    from a CDN."""
    if not alt.strip():
        raise ValueError(
            "alt is empty: describe what the figure shows, for screen readers"
        )
    html = animation.to_jshtml()
    start = html.index('<link rel="stylesheet"')
    html = html[:start] + html[html.index(">", start) + 1 :]  # the CDN stylesheet
    # the repeat-mode form is read by the player's script, never submitted: its action
    # "#n" would be a link to an anchor that does not exist
    html = html.replace(' action="#n"', "")
    for icon, text in _BUTTON_TEXT.items():
        html = html.replace(f'<i class="{icon}"></i>', text)
    escaped = alt.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return html.replace("<img id=", f'<img alt="{escaped}" id=', 1)
