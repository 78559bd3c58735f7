"""Summarizes benchmark runs (medians, spreads, ratios) and renders them as Markdown tables and an SVG chart."""

import math
import statistics
from html import escape

SERVER_LABELS = {"ferry": "ferry", "fastapi": "FastAPI", "nginx": "nginx"}
COLORS = {"ferry": "#3b7dd8", "fastapi": "#e8803a", "nginx": "#555555"}
KIND_TITLES = {"upload": "Uploads", "download": "Downloads"}


def size_label(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} B"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


# --- summary ---------------------------------------------------------------------------------------------------


def stats(runs) -> dict:
    rps = [r.rps for r in runs]
    return {
        "runs": len(runs),
        "rps": round(statistics.median(rps), 1),
        "rps_min": round(min(rps), 1),
        "rps_max": round(max(rps), 1),
        "avg_latency_ms": round(statistics.median(r.avg_latency_ms for r in runs), 2),
        "p99_ms": round(statistics.median(r.p99_ms for r in runs), 2),
        "peak_rss_mib": max(r.peak_rss_mib for r in runs),
        "cpu_s": round(statistics.median(r.cpu_s for r in runs), 2),
        "errors": sum(r.errors for r in runs),
        "target": runs[0].target,
    }


def summarize(runs, endpoints) -> list[dict]:
    """One entry per (size, workers, endpoint): each server's median, min and max req/s and its other figures,
    and ferry's ratio to each reference: median over median, and the lowest and highest ratio of a single round
    (ferry and the reference measured one after the other)."""
    out = []
    groups = {}
    for r in runs:
        if r.kind in ("upload", "download"):
            groups.setdefault((r.size, r.workers, r.kind, r.strategy), []).append(r)
    by_name = {(e.kind, e.strategy): e for e in endpoints}
    for (size, workers, kind, strategy), group in groups.items():
        e = by_name[(kind, strategy)]
        servers = {}
        # the references, then ferry's variants (`ferry:<name>`) in the order they ran
        for name in dict.fromkeys([*SERVER_LABELS, *(r.server for r in group)]):
            mine = [r for r in group if r.server == name]
            if mine:
                servers[name] = stats(mine)
        vs = {}
        ferry = {r.round: r.rps for r in group if r.server == "ferry"}
        variants = {}
        for name in (n for n in servers if n.startswith("ferry:") and "ferry" in servers):
            theirs = {r.round: r.rps for r in group if r.server == name}
            rounds = [theirs[n] / ferry[n] for n in theirs if ferry.get(n)]
            variants[name] = {
                "ratio": round(servers[name]["rps"] / servers["ferry"]["rps"], 3),
                "min": round(min(rounds), 3) if rounds else None,
                "max": round(max(rounds), 3) if rounds else None,
            }
        for ref in ("fastapi", "nginx"):
            theirs = {r.round: r.rps for r in group if r.server == ref}
            if "ferry" in servers and ref in servers and servers[ref]["rps"]:
                rounds = [ferry[n] / theirs[n] for n in ferry if theirs.get(n)]
                vs[ref] = {
                    "ratio": round(servers["ferry"]["rps"] / servers[ref]["rps"], 2),
                    "min": round(min(rounds), 2) if rounds else None,
                    "max": round(max(rounds), 2) if rounds else None,
                }
        out.append({"kind": kind, "strategy": strategy, "path": e.path, "body": e.body, "streamed": e.streamed,
                    "order": e.order, "size": size, "workers": workers, "servers": servers, "vs": vs,
                    "variants": variants})
    out.sort(key=lambda s: (s["size"], s["workers"], s["kind"] != "upload", s["order"]))
    return out


def nginx_overall(summaries, size, workers, kind) -> dict | None:
    """nginx's figures over every run of this kind (it serves the same PUT or file beside each endpoint)."""
    rows = [s["servers"]["nginx"] for s in summaries
            if (s["size"], s["workers"], s["kind"]) == (size, workers, kind) and "nginx" in s["servers"]]
    if not rows:
        return None
    medians = [r["rps"] for r in rows]
    return {"rps": statistics.median(medians), "rps_min": min(r["rps_min"] for r in rows),
            "rps_max": max(r["rps_max"] for r in rows), "runs": sum(r["runs"] for r in rows),
            "target": rows[0]["target"], "peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
            "p99_ms": statistics.median(r["p99_ms"] for r in rows)}


# --- Markdown --------------------------------------------------------------------------------------------------


def rps_cell(s: dict | None) -> str:
    if not s:
        return "–"
    if s["runs"] > 1:
        return f"{s['rps']:,.0f} ({s['rps_min']:,.0f}–{s['rps_max']:,.0f})"
    return f"{s['rps']:,.0f}"


def ratio_cell(v: dict | None) -> str:
    if not v:
        return "–"
    if v["min"] is not None and v["min"] != v["max"]:
        return f"{v['ratio']:.2f}× ({v['min']:.2f}–{v['max']:.2f})"
    return f"{v['ratio']:.2f}×"


def label(server: str) -> str:
    return SERVER_LABELS.get(server, server)


def variants_markdown(meta: dict, summaries: list[dict]) -> list[str]:
    """Each variant of ferry against plain ferry, measured in the same rounds: what the variant costs."""
    names = list(dict.fromkeys(n for s in summaries for n in s.get("variants", {})))
    if not names:
        return []
    out = ["## ferry variants, each over plain ferry in the same rounds", ""]
    for name in names:
        words = meta.get("variants", {}).get(name.partition(":")[2], "")
        out.append(f"- `{name}`: `{words}`")
    out += ["", "| size | workers | endpoint | plain ferry req/s | "
            + " | ".join(f"`{n}` req/s | `{n}` ÷ plain" for n in names) + " |",
            "|---|---:|---|---:|" + "---:|---:|" * len(names)]
    for s in summaries:
        if not s.get("variants"):
            continue
        cells = [size_label(s["size"]), str(s["workers"]), f"`{s['kind']}/{s['strategy']}`",
                 rps_cell(s["servers"].get("ferry"))]
        for name in names:
            v = s["variants"].get(name)
            ratio = (f"{v['ratio']:.3f} ({v['min']:.3f}–{v['max']:.3f})" if v and v["min"] is not None
                     else "–")
            cells += [rps_cell(s["servers"].get(name)), ratio]
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def pair(s: dict, key: str, fmt: str, refs: list[str]) -> str:
    cells = [fmt.format(s["servers"][name][key]) if name in s["servers"] else "–" for name in ["ferry", *refs]]
    return " / ".join(cells)


def markdown(meta: dict, summaries: list[dict], runs) -> str:
    refs = [r for r in meta["references"] if r in ("fastapi", "nginx")]
    n = meta["repeat"]
    out = [
        "# ferry benchmark",
        "",
        f"- when: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']}",
        *(f"- {name}: {version}" for name, version in meta["versions"].items()),
        f"- wrk: `{meta['wrk']}`; data dir: {meta['data_dir']} (prewarmed: {meta['prewarm']}); "
        f"ferry `--fsync {str(meta['fsync']).lower()}`",
        f"- load average (1 min) at the end of the runs: median {statistics.median(r.load for r in runs):.1f}, "
        f"highest {max(r.load for r in runs):.1f}; wrk and the server under test account for about 2 of it"
        if runs and any(getattr(r, "load", 0) for r in runs) else "- load average: not recorded",
        f"- {plural(n, 'round')}: in each, every endpoint ran on " + ", then ".join(
            SERVER_LABELS[s] for s in ["ferry", *refs]) + ", each on a fresh server and data directory.",
        "",
        "req/s is the median of the rounds, with the slowest and fastest round in brackets. A ratio is ferry's "
        "median over the reference's; in brackets, the lowest and highest ratio within a single round."
        if n > 1 else "Single runs: on a shared machine, expect them to move by 10–20% from run to run.",
        "",
    ]
    groups = {}
    for s in summaries:
        groups.setdefault((s["size"], s["workers"], s["kind"]), []).append(s)
    for (size, workers, kind), group in groups.items():
        out += [f"## {kind}s, {size_label(size)}, {plural(workers, 'worker')}", ""]
        head = ["endpoint", "body", "streamed?", "ferry req/s"]
        align = ["---", "---", "---", "---:"]
        for ref in refs:
            head += [f"{SERVER_LABELS[ref]} req/s", f"ferry ÷ {SERVER_LABELS[ref]}"]
            align += ["---:", "---:"]
        who = " / ".join(SERVER_LABELS[s] for s in ["ferry", *refs])
        head += [f"p99 ({who})", f"peak RSS MiB ({who})", "errors"]
        align += ["---:", "---:", "---:"]
        out += ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
        for s in group:
            cells = [f"`{s['kind']}/{s['strategy']}`", s["body"], s["streamed"], rps_cell(s["servers"].get("ferry"))]
            for ref in refs:
                cells += [rps_cell(s["servers"].get(ref)), ratio_cell(s["vs"].get(ref))]
            cells += [pair(s, "p99_ms", "{:.1f} ms", refs), pair(s, "peak_rss_mib", "{:.0f}", refs),
                      str(sum(v["errors"] for v in s["servers"].values()))]
            out.append("| " + " | ".join(cells) + " |")
        overall = nginx_overall(summaries, size, workers, kind)
        if overall:
            out += ["", f"nginx ({overall['target']}) over all {overall['runs']} of its runs: median of the "
                        f"endpoints' medians {overall['rps']:,.0f} req/s, runs from {overall['rps_min']:,.0f} to "
                        f"{overall['rps_max']:,.0f}, peak RSS {overall['peak_rss_mib']:.0f} MiB."]
        out.append("")
    out += variants_markdown(meta, summaries)
    fsync = [r for r in runs if r.kind == "fsync"]
    if fsync:
        out += ["## the cost of fsync", "", "| endpoint | setting | runs | req/s (min–max) |", "|---|---|---:|---:|"]
        for note in dict.fromkeys(r.note for r in fsync):
            mine = [r for r in fsync if r.note == note]
            st = stats(mine)
            out.append(f"| `upload/{mine[0].strategy}` | {note} | {st['runs']} | {rps_cell(st)} |")
        out.append("")
    out += ["## every run", "",
            "| size | workers | endpoint | round | server | req/s | requests (wrk / ferry's /metrics) | "
            "bytes (ferry's /metrics) | avg latency | p99 | peak RSS | CPU s | load | errors | note |",
            "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        target = "" if r.server != "nginx" else f" ({r.target})"
        server_requests = getattr(r, "server_requests", None)
        server_bytes = getattr(r, "server_bytes", None)
        seen = f"{r.requests:,} / {server_requests:,}" if server_requests is not None else f"{r.requests:,} / –"
        moved = f"{server_bytes:,}" if server_bytes is not None else "–"
        out.append(f"| {size_label(r.size)} | {r.workers} | `{r.kind}/{r.strategy}` | {r.round} | "
                   f"{label(r.server)}{target} | {r.rps:,.0f} | {seen} | {moved} | {r.avg_latency_ms:.2f} ms | "
                   f"{r.p99_ms:.2f} ms | {r.peak_rss_mib:.0f} MiB | {r.cpu_s:.1f} | {getattr(r, 'load', 0):.1f} | "
                   f"{r.errors} | {escape(r.note)} |")
    out.append("")
    return "\n".join(out)


# --- SVG -------------------------------------------------------------------------------------------------------


def nice_step(peak: float, ticks: int = 5) -> float:
    raw = max(peak, 1) / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def svg(summaries: list[dict], meta: dict) -> str:
    """Per size and worker count, a panel of uploads and a panel of downloads, each on its own requests/sec
    scale: a bar per server at its median, whiskers from its slowest to its fastest round, nginx as a line."""
    width, label_w, plot_w = 1000, 340, 540
    bar_h, bar_gap, cat_gap = 13, 2, 12
    refs = meta["references"]
    bar_servers = ["ferry", *(["fastapi"] if "fastapi" in refs else [])]
    n = meta["repeat"]
    parts, y = [], 0

    def text(x, ty, s, **attrs):
        extra = "".join(f" {k.replace('_', '-')}='{v}'" for k, v in attrs.items())
        parts.append(f"<text x='{x:.1f}' y='{ty:.1f}'{extra}>{escape(s)}</text>")

    text(10, 24, "ferry: requests per second per endpoint (longer is better)", font_size=17, font_weight="bold")
    text(10, 44, f"wrk {meta['wrk']}; " + (f"bars: median of {n} rounds, whiskers: slowest to fastest round"
                                             if n > 1 else "single runs"), fill="#444")
    # legend
    lx, y = 10, 62
    for name in bar_servers:
        parts.append(f"<rect x='{lx}' y='{y}' width='14' height='12' fill='{COLORS[name]}'/>")
        text(lx + 20, y + 10, SERVER_LABELS[name])
        lx += 110
    if "nginx" in refs:
        parts.append(f"<line x1='{lx}' y1='{y + 6}' x2='{lx + 24}' y2='{y + 6}' stroke='{COLORS['nginx']}' "
                     "stroke-width='2' stroke-dasharray='5,3'/>")
        text(lx + 30, y + 10, "nginx (WebDAV PUT / static sendfile), median")
    y += 30

    sections = {}
    for s in summaries:
        sections.setdefault((s["size"], s["workers"]), {}).setdefault(s["kind"], []).append(s)
    for (size, workers), kinds in sections.items():
        y += 10
        text(10, y + 14, f"{size_label(size)} file, {plural(workers, 'worker')} per server", font_size=15,
             font_weight="bold")
        y += 28
        for kind in ("upload", "download"):
            rows = kinds.get(kind)
            if not rows:
                continue
            overall = nginx_overall(summaries, size, workers, kind)
            peak = max([v["rps_max"] for s in rows for name, v in s["servers"].items() if name in bar_servers]
                       + ([overall["rps"]] if overall else []))
            step = nice_step(peak)
            top = math.ceil(peak / step) * step
            scale = plot_w / top
            text(10, y + 14, KIND_TITLES[kind], font_size=13, font_weight="bold")
            y += 24
            panel_top = y
            per_cat = len(bar_servers) * (bar_h + bar_gap) - bar_gap
            for s in rows:
                text(label_w - 8, y + per_cat / 2 + 4, f"{kind}/{s['strategy']}", text_anchor="end")
                for i, name in enumerate(bar_servers):
                    by = y + i * (bar_h + bar_gap)
                    v = s["servers"].get(name)
                    if not v:
                        text(label_w + 4, by + bar_h - 2, f"no {SERVER_LABELS[name]} twin", fill="#888",
                             font_size=11)
                        continue
                    w = max(1.0, v["rps"] * scale)
                    parts.append(f"<rect x='{label_w}' y='{by}' width='{w:.1f}' height='{bar_h}' "
                                 f"fill='{COLORS[name]}'><title>{escape(SERVER_LABELS[name])} {kind}/"
                                 f"{escape(s['strategy'])}: {v['rps']:,.0f} req/s</title></rect>")
                    end = label_w + w
                    if v["runs"] > 1:
                        x1, x2, cy = label_w + v["rps_min"] * scale, label_w + v["rps_max"] * scale, by + bar_h / 2
                        parts.append(f"<path d='M{x1:.1f},{cy} H{x2:.1f} M{x1:.1f},{cy - 4} V{cy + 4} "
                                     f"M{x2:.1f},{cy - 4} V{cy + 4}' stroke='#222' fill='none'/>")
                        end = max(end, x2)
                    text(end + 5, by + bar_h - 2, f"{v['rps']:,.0f}", font_size=11, stroke="white",
                         stroke_width=3, paint_order="stroke")
                y += per_cat + cat_gap
            panel_bottom = y - cat_gap + 6
            # axis, ticks and grid
            parts.append(f"<line x1='{label_w}' y1='{panel_top - 4}' x2='{label_w}' y2='{panel_bottom}' stroke='#000'/>")
            parts.append(f"<line x1='{label_w}' y1='{panel_bottom}' x2='{label_w + plot_w}' y2='{panel_bottom}' "
                         "stroke='#000'/>")
            tick = 0.0
            while tick <= top + step / 2:
                x = label_w + tick * scale
                if tick:
                    parts.append(f"<line x1='{x:.1f}' y1='{panel_top - 4}' x2='{x:.1f}' y2='{panel_bottom}' "
                                 "stroke='#ddd'/>")
                parts.append(f"<line x1='{x:.1f}' y1='{panel_bottom}' x2='{x:.1f}' y2='{panel_bottom + 5}' "
                             "stroke='#000'/>")
                text(x, panel_bottom + 17, f"{tick:,.0f}", text_anchor="middle", font_size=11)
                tick += step
            if overall:
                x = label_w + overall["rps"] * scale
                parts.append(f"<line x1='{x:.1f}' y1='{panel_top - 8}' x2='{x:.1f}' y2='{panel_bottom}' "
                             f"stroke='{COLORS['nginx']}' stroke-width='2' stroke-dasharray='5,3'/>")
                text(x + 4, panel_top - 10, f"nginx {overall['rps']:,.0f}", fill=COLORS["nginx"], font_size=11)
            text(label_w + plot_w / 2, panel_bottom + 34, f"{KIND_TITLES[kind].lower()}: requests per second",
                 text_anchor="middle")
            y = panel_bottom + 50
    # grid lines were drawn after the bars; put them underneath by emitting them first
    grid = [p for p in parts if "stroke='#ddd'" in p]
    rest = [p for p in parts if "stroke='#ddd'" not in p]
    return "\n".join([f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{y + 10}' "
                      "font-family='sans-serif' font-size='12'>",
                      "<rect width='100%' height='100%' fill='white'/>", *grid, *rest, "</svg>", ""])
