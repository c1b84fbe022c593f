"""The figures are built from numbers: the unrolled drawing has one box per cell and step."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from rnn_course.plotting import draw_memory_cell, draw_unrolled, plot_gradient_norms  # noqa: E402


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
def test_unrolled_state_labels_sit_clear_of_arrows_boxes_and_each_other(seq_len, num_layers):
    """Each hidden-state label h_t between two cells must be readable: its drawn extent touches no box,
    no arrow and no other label (measured in pixels after drawing)."""
    ax = draw_unrolled(seq_len, num_layers)
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    labels = [t for t in ax.texts if t.get_text().startswith("$h_{") and not t.get_text().startswith("$h_0")]
    assert len(labels) == (seq_len - 1) * num_layers
    label_boxes = [t.get_window_extent(renderer) for t in labels]
    others = [patch.get_window_extent(renderer) for patch in ax.patches]
    others += [t.get_window_extent(renderer) for t in ax.texts if t not in labels]
    for label, box in zip(labels, label_boxes):
        clashes = [other for other in others + [b for b in label_boxes if b is not box] if _overlap(box, other)]
        assert clashes == [], f"{label.get_text()} at {box} overlaps {clashes}"
    plt.close("all")


def _overlap(a, b, margin: float = 0.5) -> bool:
    """Whether two pixel boxes overlap by more than ``margin`` pixels in both directions."""
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > margin) and (min(a.y1, b.y1) - max(a.y0, b.y0) > margin)


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
