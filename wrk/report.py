"""Renders benchmark rows as the post's Markdown table and as an SVG bar chart."""

from html import escape


def markdown(meta: dict, rows) -> str:
    out = [
        "# ferry benchmark",
        "",
        f"- when: {meta['date']}",
        f"- machine: {meta['machine']}",
        f"- wrk: `{meta['wrk']}`; data dir: {meta['data_dir']}; ferry `--fsync {str(meta['fsync']).lower()}`",
        "",
    ]
    groups = {}
    for row in rows:
        groups.setdefault((row.kind, row.size, row.workers), []).append(row)
    for (kind, size, workers), group in groups.items():
        out += [f"## {kind}s, {size_label(size)}, {workers} worker{'s' if workers > 1 else ''}", ""]
        out += [
            "| endpoint | body | streamed? | requests | requests/sec | avg latency | p99 | peak RSS | CPU s | vs nginx | errors |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in group:
            ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "–"
            note = f" ({r.note})" if r.kind == "fsync" and r.note else ""
            out.append(
                f"| `{r.endpoint}`{note} | {r.body} | {r.streamed} | {r.requests:,} | {r.rps:,.0f} | "
                f"{r.avg_latency_ms:.2f} ms | {r.p99_ms:.2f} ms | {r.peak_rss_mib:.0f} MiB | {r.cpu_s:.1f} | {ratio} | {r.errors} |"
            )
        out.append("")
    return "\n".join(out)


def size_label(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} B"


def svg(rows, size: int, workers: int) -> str:
    """Horizontal bars of requests/sec for one size and worker count, uploads then downloads."""
    chosen = [r for r in rows if r.size == size and r.workers == workers and r.kind in ("upload", "download")]
    chosen.sort(key=lambda r: (r.kind != "upload", r.server != "nginx"))
    if not chosen:
        return "<svg xmlns='http://www.w3.org/2000/svg'/>"
    bar_h, gap, label_w, chart_w = 22, 6, 390, 460
    top = 50
    height = top + len(chosen) * (bar_h + gap) + 30
    peak = max(r.rps for r in chosen) or 1
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + chart_w + 120}' height='{height}' "
        "font-family='sans-serif' font-size='12'>",
        "<rect width='100%' height='100%' fill='white'/>",
        f"<text x='10' y='24' font-size='16' font-weight='bold'>ferry: requests/sec, {size_label(size)} file, "
        f"{workers} worker{'s' if workers > 1 else ''} (longer is better)</text>",
    ]
    for i, r in enumerate(chosen):
        y = top + i * (bar_h + gap)
        w = max(1, int(chart_w * r.rps / peak))
        color = "#888888" if r.server == "nginx" else ("#3b7dd8" if r.kind == "upload" else "#2f9e5b")
        label = f"{r.kind}: {r.endpoint}" if r.server != "nginx" else r.endpoint
        parts.append(f"<text x='{label_w - 8}' y='{y + 15}' text-anchor='end'>{escape(label)}</text>")
        parts.append(f"<rect x='{label_w}' y='{y}' width='{w}' height='{bar_h}' fill='{color}'/>")
        parts.append(f"<text x='{label_w + w + 6}' y='{y + 15}'>{r.rps:,.0f}</text>")
    parts.append("</svg>")
    return "\n".join(parts)
