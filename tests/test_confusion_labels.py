"""Confusion matrices show every label in full or unambiguously, in text and in the PNG."""

from __future__ import annotations

import numpy as np
import pytest

from matnet.cli.common import confusion_table

LONG = ["penguin_species_Adelie", "penguin_species_Chinstrap", "penguin_species_Gentoo"]
MATRIX = np.array([[40, 1, 0], [2, 30, 1], [0, 0, 50]])


def test_short_labels_head_their_columns():
    text = confusion_table(MATRIX, ["a", "bb", "ccc"])
    assert text.splitlines()[0].split() == ["a", "bb", "ccc"]


def test_long_labels_are_shown_in_full_with_a_key_per_column():
    lines = confusion_table(MATRIX, LONG).splitlines()
    assert lines[0].split() == ["[1]", "[2]", "[3]"]
    for i, label in enumerate(LONG):
        assert lines[i + 1].split()[:2] == [f"[{i + 1}]", label]
        assert lines[i + 1].split()[2:] == [str(c) for c in MATRIX[i]]


def test_the_png_ticks_carry_every_label_in_full():
    plots = pytest.importorskip("matnet.plots")
    pytest.importorskip("matplotlib")
    ticks = plots.tick_labels([*LONG, "x" * 60])
    assert [t.replace("\n", "") for t in ticks] == [*LONG, "x" * 60]
    assert all(len(line) <= 26 for t in ticks for line in t.splitlines())
    png = plots.confusion_matrix_png(MATRIX, LONG, title="t" * 200)
    assert png.startswith(b"\x89PNG")
