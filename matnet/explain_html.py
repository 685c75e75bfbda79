"""The page :func:`matnet.explain.to_html` writes: its HTML, style and script are package data
(``matnet/html/``), written in the project and inlined, so the page opens from disk with no network.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["render"]


def _template(name: str) -> str:
    return (resources.files("matnet") / "html" / name).read_text(encoding="utf-8")


def render(data_json: str) -> str:
    """The page for a recorded run, given as JSON text (see ``matnet.explain._payload``).

    ``</`` in the data is written ``<\\/`` so no value can close the script element that holds it.
    """
    page = _template("page.html")
    page = page.replace("/*STYLE*/", _template("page.css"), 1)
    page = page.replace("/*SCRIPT*/", _template("page.js"), 1)
    return page.replace("/*DATA*/", data_json.replace("</", "<\\/"), 1)
