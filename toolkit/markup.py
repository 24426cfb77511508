"""Markdown tables of the report's text sections as HTML (Python-Markdown, ``tables`` extension).

Every character is HTML-escaped first, so a scan's or a plugin's strings (element names,
labels) cannot inject markup; the ``|`` tables and paragraphs survive the escaping.
"""
from __future__ import annotations


def markdown_html(text: str) -> str:
    """``text`` (Markdown with pipe tables) as an HTML fragment, its characters escaped."""
    import html

    import markdown

    return markdown.markdown(html.escape(text, quote=False), extensions=["tables"])
