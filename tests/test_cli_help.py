"""What `matnet train --help` says is so: its defaults come from the recipe and the code that runs."""

from __future__ import annotations

import re

import pytest

from matnet.cli import build_parser
from matnet.tabular import TabularRecipe


@pytest.fixture(scope="module")
def train_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return " ".join(sub.choices["train"].format_help().split())


def test_train_help_quotes_the_recipe_defaults(train_help):
    recipe = TabularRecipe()
    assert f"default: {recipe.epochs} tabular, 50 mlp" in train_help
    assert f"default: {recipe.dropout:g} tabular, 0 mlp" in train_help
    assert f"default: {recipe.batch_size} (at most an eighth of the rows) tabular" in train_help
    assert f"default: {recipe.validation_fraction:g} tabular, 0.1 mlp" in train_help
    hidden = ",".join(map(str, recipe.hidden))
    assert f"default: {hidden} per member for tabular" in train_help
    optimizer = f"adamw (beta2 {recipe.beta_2:g}, weight decay {recipe.weight_decay:g}) tabular"
    assert optimizer in train_help


def test_the_defaults_the_help_names_are_the_ones_a_run_uses(train_help):
    """The help's numbers against the settings `matnet train` resolves with no option given."""
    from matnet.cli.commands import _settings

    args = build_parser().parse_args(["train", "iris"])
    settings = _settings(args)
    assert re.search(rf"default: {settings.epochs} tabular", train_help)
    assert re.search(rf"default: {settings.dropout:g} tabular", train_help)
    assert settings.fit_options.get("optimizer") is None  # the recipe's AdamW, as the help says
    mlp = _settings(build_parser().parse_args(["train", "iris", "--recipe", "mlp"]))
    assert (mlp.epochs, mlp.dropout, mlp.hidden) == (50, 0.0, (128, 64))
    assert mlp.fit_options["optimizer"] == "adam"


def test_train_says_which_epoch_it_kept(tmp_path, capsys):
    import matnet
    from matnet.cli import main

    data = tmp_path.parent / "shapes.csv"
    rows = ["a,b,y"] + [f"{i % 7},{(i * 3) % 5},{(i % 7) * 2 + (i * 3) % 5}" for i in range(60)]
    data.write_text("\n".join(rows) + "\n")
    code = main(["train", str(data), "--target", "y", "--epochs", "6", "--quiet",
                 "--out", str(tmp_path / "m.st")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    best = matnet.load(tmp_path / "m.st").metadata["training"]["best_epoch"]
    if best == 6:
        assert "trained 6 epochs; kept the weights of the last one" in out
    else:
        assert (
            f"trained 6 epochs; kept the weights of epoch {best}, the best on the validation" in out
        )
