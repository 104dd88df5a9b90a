"""A very small SVG writer: the console's pictures are drawn on the server.

No plotting library: the pictures are a few dozen rectangles, lines and
labels, and writing them directly keeps them small, crisp at any zoom,
styled by the console's CSS classes, and accessible (every mark can carry a
``<title>`` that screen readers and hover tooltips read).  Every attribute
and text is escaped here, so callers can pass values from the store safely.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

Number = float | int


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


class Svg:
    """Collects elements; ``str(svg)`` is the finished document."""

    def __init__(
        self, width: Number, height: Number, *, ident: str, title: str, desc: str = "", css_class: str = ""
    ) -> None:
        self.width, self.height = width, height
        self.ident = re.sub(r"[^A-Za-z0-9_-]", "-", ident)  # used in id attributes
        self.title, self.desc, self.css_class = title, desc, css_class
        self._parts: list[str] = []

    def add(self, tag: str, *, text: str | None = None, tooltip: str | None = None, **attrs: object) -> None:
        """One element; ``class_`` becomes ``class``, other underscores become dashes."""
        rendered = " ".join(
            f"{_name(key)}={quoteattr(_fmt(value))}" for key, value in attrs.items() if value is not None
        )
        inner = (f"<title>{escape(tooltip)}</title>" if tooltip else "") + (escape(text) if text else "")
        self._parts.append(f"<{tag} {rendered}>{inner}</{tag}>" if inner else f"<{tag} {rendered}/>")

    def __str__(self) -> str:
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_fmt(self.width)} {_fmt(self.height)}" '
            f'width="{_fmt(self.width)}" height="{_fmt(self.height)}" role="img" '
            f'aria-labelledby="{self.ident}-title {self.ident}-desc" class={quoteattr(self.css_class)} '
            'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="12">'
            f'<title id="{self.ident}-title">{escape(self.title)}</title>'
            f'<desc id="{self.ident}-desc">{escape(self.desc)}</desc>'
        )
        return head + "".join(self._parts) + "</svg>"


def _name(key: str) -> str:
    return "class" if key == "class_" else key.rstrip("_").replace("_", "-")
