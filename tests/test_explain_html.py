"""explain's page (matnet.explain.to_html): the recorded run is the model's own training, and the
written page, opened offline in headless Chromium, shows those numbers and checks dW in JavaScript."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from tolerance import assert_close

import matnet
from matnet.explain import _describe, _run, to_html


def small_run(tmp_path: Path, **options):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 6))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    model = matnet.MLP([6, 5, 3], "tanh", loss="cross_entropy", seed=1)
    path = tmp_path / "run.html"
    record = to_html(model, X, y, path, steps=options.pop("steps", 6), batch=8, **options)
    return model, X, y, path, record


def test_the_recording_is_the_models_own_sgd_run(tmp_path):
    model, X, y, path, record = small_run(tmp_path, learning_rate=0.1)
    before = model.flat_params.copy()
    assert len(record.steps) == 6
    # Step 0 is matnet's own forward and backward on the first mini-batch (same seed, same order).
    order = np.random.default_rng(0).permutation(60)[:8]
    expected, value = _run(model, _describe(model, 8), X[order], y[order], 0)
    assert value == pytest.approx(record.loss[0])
    for name, array in expected.items():
        np.testing.assert_array_equal(record.steps[0][name], array, err_msg=name)
    for t in range(5):
        now, nxt = record.steps[t], record.steps[t + 1]
        for name in ("W1", "b1", "W2", "b2"):  # plain SGD with the recorded gradient
            assert_close(nxt[name], now[name] - 0.1 * now["d" + name], rtol=1e-6)
        assert_close(now["dW1"], now["A0"].T @ now["dZ1"], rtol=1e-5)
    assert_close(record.analytic, record.numeric, rtol=1e-3)
    np.testing.assert_array_equal(model.flat_params, before)  # the run trained a copy
    assert 0 < record.product_share < 1
    text = path.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text  # nothing to fetch


def test_large_matrices_are_sampled_and_the_page_says_so(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 40))
    y = rng.integers(0, 4, 80)
    model = matnet.MLP([40, 30, 4], "relu", loss="cross_entropy")
    record = to_html(model, X, y, tmp_path / "big.html", steps=3, batch=20, max_side=10)
    rows, cols = record.shown["W1"]
    assert rows.size == 10 and cols.size == 10 and rows[0] == 0 and rows[-1] == 39
    text = (tmp_path / "big.html").read_text(encoding="utf-8")
    assert "W1 (40×30): 10 of 40 rows, 10 of 30 columns" in text


def test_the_size_limit_is_checked_before_anything_is_written(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 30))
    y = rng.integers(0, 3, 50)
    model = matnet.MLP([30, 20, 3], "relu", loss="cross_entropy")
    with pytest.raises(ValueError, match="max_bytes"):
        to_html(model, X, y, tmp_path / "p.html", steps=50, batch=20, max_bytes=100_000)
    assert not (tmp_path / "p.html").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"steps": 0}, "steps=0"),
        ({"batch": 61}, "batch=61"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"max_side": 1}, "max_side=1"),
    ],
)
def test_bad_options_name_the_value(tmp_path, options, message):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 6))
    model = matnet.MLP([6, 3], loss="cross_entropy")
    with pytest.raises(ValueError, match=message):
        to_html(model, X, rng.integers(0, 3, 60), tmp_path / "p.html", **options)
    with pytest.raises(ValueError, match="folder"):
        to_html(model, X, rng.integers(0, 3, 60), tmp_path / "no" / "p.html")


def test_the_cli_writes_the_page(tmp_path, capsys):
    from matnet.cli import main

    path = tmp_path / "run.html"
    code = main(
        ["explain", "--sizes", "64,16,10", "--data", "digits", "--html", str(path), "--steps", "4"]
    )
    out = capsys.readouterr().out
    assert code == 0 and path.exists()
    assert str(path) in out
    # the fresh model standardizes the pixels in its first layer, whose output S0 feeds W1
    assert "dW1 = S0ᵀ · dZ1" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--sizes", "64,16,3", "--data", "digits"], "try --sizes 64,32,10"),
        (["--sizes", "10,4,1", "--data", "diabetes"], "regression"),
        (["--values"], "--values"),
    ],
)
def test_the_cli_refuses_a_page_it_cannot_write(tmp_path, capsys, argv, message):
    from matnet.cli import main

    path = tmp_path / "run.html"
    assert main(["explain", *argv, "--html", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not path.exists()


# --- the page in a browser ---------------------------------------------------------------------


def _browser() -> str:
    """Chromium's path, or a skip where it cannot be installed; CI installs it (.ci/run), so there
    a missing browser is a failure, not a skip."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(
                "CI must have chromium and playwright: .ci/run installs them (make browser)"
            )
        pytest.skip("needs Debian's chromium and playwright (`make browser`, as root)")
    if sys.platform != "linux":
        pytest.skip("the browser test drives Debian's chromium (Linux)")
    return path


def _hover_cell(page, name: str, r: int, c: int) -> tuple[int, int, float]:
    """Move the mouse over shown cell (r, c) of the heatmap of ``name``; the page's readout."""
    canvas = page.locator(f'.heatmap[data-name="{name}"] canvas')
    cell = float(canvas.get_attribute("data-cell"))
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + (c + 0.5) * cell, box["y"] + (r + 0.5) * cell)
    readout = page.locator("#readout")
    assert readout.get_attribute("data-name") == name
    return (
        int(readout.get_attribute("data-row")),
        int(readout.get_attribute("data-col")),
        float(readout.get_attribute("data-value")),
    )


@pytest.mark.slow
def test_the_page_offline_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    executable = _browser()
    _, _, _, path, record = small_run(tmp_path, steps=8)
    url = path.resolve().as_uri()
    requests, blocked, errors = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_offline(True)
        page = context.new_page()

        def only_the_file(route):
            if route.request.url == url:
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        page.route("**/*", only_the_file)
        page.on("request", lambda request: requests.append(request.url))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        assert requests == [url] and blocked == [] and errors == []

        page.locator('#forward .eq[data-name="Z1"]').click()
        shown = [h.get_attribute("data-name") for h in page.locator(".heatmap").all()]
        assert shown == ["A0", "W1", "b1", "Z1"]
        page.locator("#step").focus()
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        assert page.locator("#step-label").inner_text().startswith("3 of 7")
        for name, r, c in (("W1", 2, 4), ("Z1", 5, 1), ("A0", 7, 3)):
            row, col, value = _hover_cell(page, name, r, c)
            assert (row, col) == (r, c)
            assert value == pytest.approx(float(record.steps[3][name][row, col]), rel=1e-6)

        page.locator('#backward .eq[data-name="dW1"]').click()
        row, col, value = _hover_cell(page, "dW1", 4, 2)
        assert value == pytest.approx(float(record.steps[3]["dW1"][row, col]), rel=1e-6, abs=1e-9)
        assert page.locator("#check").get_attribute("data-agree") == "true"
        assert page.locator(".product-check").count() == 2
        assert "ok" in page.locator("#numeric-check").get_attribute("class")
        page.screenshot(path=str(tmp_path / "explain-page.png"), full_page=False)

        # Sampled rows and columns: the dW check still sums over every row of the batch.
        rng = np.random.default_rng(0)
        X = rng.standard_normal((80, 40))
        big = matnet.MLP([40, 30, 4], "relu", loss="cross_entropy")
        sampled = tmp_path / "big.html"
        to_html(big, X, rng.integers(0, 4, 80), sampled, steps=3, batch=20, max_side=10)
        other = context.new_page()
        other.on("pageerror", lambda exc: errors.append(str(exc)))
        other.goto(sampled.resolve().as_uri())
        assert "10 of 20 rows" in other.locator("#sampling").inner_text()
        assert other.locator("#check").get_attribute("data-agree") == "true"

        # The check can fail: a page whose recorded dW1 is off by 1% says so.
        text = sampled.read_text(encoding="utf-8")
        start = text.index('id="run-data">') + len('id="run-data">')
        end = text.index("</script>", start)
        data = json.loads(text[start:end])
        for values in data["values"]:
            values["dW1"] = [v * 1.01 for v in values["dW1"]]
        sampled.write_text(text[:start] + json.dumps(data) + text[end:], encoding="utf-8")
        other.goto(sampled.resolve().as_uri())
        assert other.locator("#check").get_attribute("data-agree") == "false"
        assert "DISAGREES" in other.locator(".product-check").first.inner_text()
        browser.close()
    assert (tmp_path / "explain-page.png").stat().st_size > 10_000
    assert requests == [url] and blocked == [] and errors == []


@pytest.mark.parametrize("recipe", ["mlp", "tabular"])
def test_a_table_model_explains_and_records_from_raw_rows(tmp_path, capsys, recipe):
    """A model trained on a raw table (text, gaps) is explained with real values and its page is
    recorded from the raw rows: the codes are made by the model's own first layer. The tabular
    recipe's model has a 3-D parameter (PeriodicLinear's L), shown as a (d, m·o) matrix."""
    from matnet.cli import main

    data = Path(__file__).parent / "data" / "penguins.csv"
    model = tmp_path / "p.safetensors"
    argv = ["train", str(data), "--target", "species", "--recipe", recipe, "--epochs", "2"]
    assert main([*argv, "--quiet", "--out", str(model)]) == 0
    common = ["explain", str(model), "--data", str(data)]
    assert main([*common, "--batch", "3", "--values"]) == 0
    assert "This step's loss" in capsys.readouterr().out
    page = tmp_path / "p.html"
    assert main([*common, "--html", str(page), "--steps", "3", "--batch", "8"]) == 0
    assert page.stat().st_size > 0
    capsys.readouterr()
    # A TypeError at the boundary is one line too, never a traceback.
    assert main(["explain", str(model), "--data", str(tmp_path / "missing.csv")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_the_cli_size_error_names_the_cli_options(tmp_path, capsys):
    """`matnet explain --html` offers --max-side and --max-bytes; its size error names them (the
    Python names max_side/max_bytes are not options of the command line)."""
    from matnet.cli import main

    page = tmp_path / "p.html"
    code = main(["explain", "--sizes", "64,32,10", "--html", str(page), "--steps", "50",
                 "--max-bytes", "100000"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and not page.exists()
    assert "over --max-bytes 100000" in err
    assert "fewer --steps, a smaller --batch or --max-side, or raise --max-bytes" in err
    assert "max_side" not in err and "max_bytes" not in err
    code = main(["explain", "--sizes", "64,32,10", "--html", str(page), "--steps", "2",
                 "--max-side", "8"])  # fmt: skip
    assert code == 0 and page.exists()


def test_a_table_models_page_scores_its_rows_read_once(tmp_path):
    """The page's curves score the rows the layers run on; a table model's codes read again as
    raw cells would send every category to "unknown" (the bug fit's validation once had)."""
    from matnet.explain import to_html
    from matnet.tabular import fit_tabular

    rng = np.random.default_rng(0)
    colour = np.asarray(rng.choice(["red", "green", "blue"], 120), dtype=object)
    table = {"size": rng.normal(size=120), "colour": colour}
    y = (colour == "red").astype(int)  # the category alone decides
    run = fit_tabular(table, y, task="classification", dtype="float64", seed=0,
                      fit_options={"epochs": 20, "verbose": 0})  # fmt: skip
    model = run.model
    record = to_html(model, table, y, tmp_path / "p.html", steps=1, batch=16, learning_rate=1e-9)
    expected = model.evaluate(table, y)  # on the raw rows: read once
    assert record.data_loss[0] == pytest.approx(expected["loss"], rel=1e-6)
    assert record.metric[0] == pytest.approx(expected["accuracy"], rel=1e-9)
