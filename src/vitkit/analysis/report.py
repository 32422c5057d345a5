"""One self-contained report.html: every picture embedded as base64, so the file can be mailed or archived alone."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "img{max-width:100%;border:1px solid #ddd}.note{background:#fff6d6;padding:.5em 1em;border-radius:4px}"
         "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
         "figcaption{font-size:12px;color:#555}")


@dataclass
class Section:
    """One heading of the report: an explanation, notes to the reader, pictures and an optional table."""

    title: str
    text: str
    images: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    table: tuple[list[str], list[list[Any]]] | None = None


def embed_png(path: Path) -> str:
    """A PNG as a data: URI, so the report needs no files beside it."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_section(section: Section) -> str:
    """The HTML of one section; every text is escaped."""
    parts = [f"<h2>{html.escape(section.title)}</h2>", f"<p>{html.escape(section.text)}</p>"]
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in section.notes]
    for image in section.images:
        name = html.escape(Path(image).name)
        parts.append(f'<figure><img src="{embed_png(image)}" alt="{name}"><figcaption>{name}</figcaption></figure>')
    if section.table is not None:
        headers, rows = section.table
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
        parts.append(f"<table><tr>{head}</tr>{body}</table>")
    return "\n".join(parts)


def write_report(sections: list[Section], path: Path, title: str, summary: list[str]) -> Path:
    """Writes the whole report as one HTML file and returns its path."""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in summary)
    body = "\n".join(render_section(section) for section in sections)
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><ul>{items}</ul>\n{body}\n"
            "</body></html>\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
