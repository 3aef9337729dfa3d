"""Self-contained HTML reports: videos and images embedded as base64, tables as HTML."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from vidtune import atomic


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def table_html(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An HTML table; floats shown with 4 significant digits."""
    def cell(v: object) -> str:
        return html.escape(f"{v:.4g}" if isinstance(v, float) else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(path: str | Path, title: str, sections: Sequence[tuple[str, str]],
                 videos: Sequence[tuple[str, Path]] = (), images: Sequence[tuple[str, Path]] = ()) -> Path:
    """Write one HTML file: title, videos (mp4, embedded), images (png, embedded), then HTML sections."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for caption, video in videos:
        if Path(video).is_file():
            parts.append(f"<figure><video controls loop autoplay muted playsinline "
                         f"src=\"{_data_uri(Path(video), 'video/mp4')}\"></video>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    for caption, image in images:
        if Path(image).is_file():
            parts.append(f"<figure><img src=\"{_data_uri(Path(image), 'image/png')}\">"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
             "video,img{max-width:100%;image-rendering:pixelated}figure{margin:1em 0}")
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    atomic.write_text(path, doc)
    return Path(path)
