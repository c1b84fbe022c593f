"""The figures are built from numbers: the unrolled drawing has one box per cell and
step.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from rnn_course.plotting import (  # noqa: E402
    UNROLLED_SPACING,
    draw_memory_cell,
    draw_unrolled,
    plot_gradient_norms,
)


def count_texts(ax, text):
    return sum(1 for t in ax.texts if t.get_text() == text)


@pytest.mark.parametrize("seq_len,num_layers", [(1, 1), (4, 1), (3, 2), (6, 3)])
def test_unrolled_has_one_cell_per_step_and_layer(seq_len, num_layers):
    ax = draw_unrolled(seq_len, num_layers)
    assert count_texts(ax, "cell") == seq_len * num_layers
    assert count_texts(ax, f"$x_{{{seq_len}}}$") == 1
    assert sum("shared by every step" in t.get_text() for t in ax.texts) == num_layers
    plt.close("all")


@pytest.mark.parametrize("seq_len,num_layers", [(4, 1), (4, 2), (6, 3)])
def test_unrolled_state_labels_sit_clear_of_arrows_boxes_and_each_other(
    seq_len, num_layers
):
    """Each hidden-state label h_t between two cells must be readable: its drawn extent
    touches no box,
    no arrow and no other label (measured in pixels after drawing)."""
    ax = draw_unrolled(seq_len, num_layers)
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    labels = [
        t
        for t in ax.texts
        if t.get_text().startswith("$h_{") and not t.get_text().startswith("$h_0")
    ]
    # one per arrow: seq_len along time in every layer (the last one leaves the
    # network), seq_len between each pair of stacked layers
    assert len(labels) == seq_len * num_layers + seq_len * (num_layers - 1)
    label_boxes = [t.get_window_extent(renderer) for t in labels]
    others = [patch.get_window_extent(renderer) for patch in ax.patches]
    others += [t.get_window_extent(renderer) for t in ax.texts if t not in labels]
    for label, box in zip(labels, label_boxes):
        clashes = [
            other
            for other in others + [b for b in label_boxes if b is not box]
            if _overlap(box, other)
        ]
        assert clashes == [], f"{label.get_text()} at {box} overlaps {clashes}"
    plt.close("all")


def _overlap(a, b, margin: float = 0.5) -> bool:
    """Whether two pixel boxes overlap by more than ``margin`` pixels in both
    directions.
    """
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > margin) and (
        min(a.y1, b.y1) - max(a.y0, b.y0) > margin
    )


def test_unrolled_rejects_bad_sizes():
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        draw_unrolled(0)


def test_gradient_norm_plot_has_one_line_per_setting():
    ax = plot_gradient_norms({"ρ=0.5": [1.0, 0.5, 0.25], "ρ=2": [1.0, 2.0, 4.0]})
    assert len(ax.lines) == 2
    assert list(ax.lines[1].get_ydata()) == [1.0, 2.0, 4.0]
    assert ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="empty"):
        plot_gradient_norms({})
    draw_memory_cell()
    plt.close("all")


@pytest.mark.parametrize("num_layers", [1, 3])
def test_unrolled_last_state_leaves_every_layer(num_layers):
    """h_T is drawn: an arrow leaves the last cell of each layer to the right, labelled
    h_T.
    """
    seq_len = 4
    ax = draw_unrolled(seq_len, num_layers)
    dx, dy = UNROLLED_SPACING
    for layer in range(1, num_layers + 1):
        superscript = f"^{{({layer})}}" if num_layers > 1 else ""
        label = f"$h_{{{seq_len}}}{superscript}$"
        assert any(
            t.get_text() == label and t.get_position()[1] > layer * dy for t in ax.texts
        )
        starts = [
            p._posA_posB[0]
            for p in ax.patches
            if hasattr(p, "_posA_posB") and p._posA_posB
        ]
        assert (seq_len * dx + 0.4, layer * dy) in starts
    plt.close("all")


def test_gradient_norm_lines_differ_by_marker_and_style():
    ax = plot_gradient_norms({f"line {i}": [1.0, 2.0] for i in range(4)})
    styles = {(line.get_marker(), line.get_linestyle()) for line in ax.lines}
    assert len(styles) == 4
    plt.close("all")


def test_memory_cell_shows_its_bias_in_readable_labels():
    ax = draw_memory_cell()
    texts = {t.get_text(): t for t in ax.texts}
    assert "$b$" in texts and "$x_t$" in texts
    assert min(t.get_fontsize() for t in ax.texts) >= 11
    plt.close("all")


def test_animation_html_has_alt_text_and_nothing_fetched_from_the_web():
    from matplotlib.animation import FuncAnimation

    from rnn_course.plotting import animation_html

    fig, ax = plt.subplots(figsize=(2, 2))
    (line,) = ax.plot([0, 1], [0, 0])
    animation = FuncAnimation(fig, lambda i: line.set_ydata([0, i]), frames=3)
    html = animation_html(animation, alt='a line that "tilts"')
    plt.close("all")
    assert 'alt="a line that &quot;tilts&quot;"' in html
    assert "http" not in html and 'class="fa' not in html
    assert html.count("data:image/png;base64") == 3  # one frame per slider position
    assert 'type="range"' in html
    assert (
        'href="#' not in html and 'action="#' not in html
    )  # no link to a missing anchor
    with pytest.raises(ValueError, match="alt is empty"):
        animation_html(animation, alt=" ")
