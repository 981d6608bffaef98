#!/usr/bin/env python3
"""Render key panels of grafana/ballast.json from a live Prometheus into one PNG.

The queries are the dashboard's own (read from the JSON by panel title, template variables
substituted), so the picture shows what the Grafana dashboard shows.

    scripts/render-dashboard.py http://127.0.0.1:9090 [--minutes 5] [--job ballast]
                                [--out docs/dashboard.png]

Needs matplotlib (installed with pip on first use if missing). Only talks to the given URL.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

try:
    import matplotlib
except ImportError:  # install on first use
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "matplotlib"])
    import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402
from datetime import datetime  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Panels of grafana/ballast.json shown in the picture, in reading order (3 x 3).
PANELS = [
    "RPC rate",
    "Disk sync duration (p99)",
    "DB size",
    "Raft proposals",
    "Memory",
    "Client traffic in",
    "Keys per shard",
    "Shard apply latency (p99)",
    "io_uring submissions",
]

# Grafana's dark theme, roughly.
BG, PANEL_BG, GRID, TEXT, MUTED = "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e9e"
COLORS = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#705da0", "#37872d", "#fade2a"]


def fmt_value(unit):
    def bytes_(v, _=None):
        for u in ["B", "KiB", "MiB", "GiB", "TiB"]:
            if abs(v) < 1024 or u == "TiB":
                return f"{v:.0f} {u}" if u == "B" else f"{v:.1f} {u}"
            v /= 1024

    def seconds(v, _=None):
        if v == 0:
            return "0"
        if abs(v) < 1e-3:
            return f"{v * 1e6:.0f} µs"
        if abs(v) < 1:
            return f"{v * 1e3:.1f} ms"
        return f"{v:.2f} s"

    def short(v, _=None):
        for div, suf in [(1e9, "G"), (1e6, "M"), (1e3, "k")]:
            if abs(v) >= div:
                return f"{v / div:.1f}{suf}"
        return f"{v:.0f}" if v == int(v) else f"{v:.2f}"

    return {
        "bytes": bytes_,
        "Bps": lambda v, _=None: bytes_(v) + "/s",
        "s": seconds,
        "reqps": lambda v, _=None: short(v) + " req/s",
        "ops": lambda v, _=None: short(v) + " ops/s",
        "percentunit": lambda v, _=None: f"{v * 100:.0f}%",
    }.get(unit, short)


def query_range(base, expr, start, end, step):
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{q}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def legend(fmt, metric):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt or "").strip() or json.dumps(metric)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prometheus", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--minutes", type=float, default=5, help="time range to show (default 5)")
    ap.add_argument("--job", default=".+", help="value (regex) for the dashboard's $job (default: any)")
    ap.add_argument("--instance", default=".+", help="value (regex) for $instance (default: any)")
    ap.add_argument("--rate-interval", default="30s", help="value for $__rate_interval (default 30s)")
    ap.add_argument("--dashboard", default=os.path.join(ROOT, "grafana", "ballast.json"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "dashboard.png"))
    a = ap.parse_args()

    dash = json.load(open(a.dashboard))
    by_title = {p["title"]: p for p in dash["panels"] if p.get("type") != "row"}
    end = time.time()
    start = end - a.minutes * 60
    step = max(1, int(a.minutes * 60 / 240))

    def subst(expr):
        return (expr.replace("$__rate_interval", a.rate_interval)
                .replace("$job", a.job).replace("$instance", a.instance))

    plt.rcParams.update({"font.size": 9, "text.color": TEXT, "axes.labelcolor": TEXT,
                         "xtick.color": MUTED, "ytick.color": MUTED, "axes.edgecolor": GRID})
    fig, axes = plt.subplots(3, 3, figsize=(18, 12), facecolor=BG)
    for ax, title in zip(axes.flat, PANELS):
        panel = by_title[title]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        ax.set_facecolor(PANEL_BG)
        ax.set_title(title, loc="left", color=TEXT, fontsize=11, fontweight="bold")
        ax.grid(True, color=GRID, linewidth=0.6)
        for s in ax.spines.values():
            s.set_visible(False)
        results = [(t, query_range(a.prometheus, subst(t["expr"]), start, end, step)) for t in panel["targets"]]
        # One instance in view: leave "{{instance}}" out of the legends.
        one = len({r["metric"].get("instance") for _, rs in results for r in rs}) <= 1
        n = 0
        for t, rs in results:
            fmt = t.get("legendFormat") or ""
            if one:
                fmt = fmt.replace("{{instance}}", "").strip()
            for series in rs:
                xs, ys = [], []
                for ts, v in series["values"]:
                    f = float(v)
                    xs.append(datetime.fromtimestamp(float(ts)))
                    ys.append(f if math.isfinite(f) else float("nan"))
                color = COLORS[n % len(COLORS)]
                ax.plot(xs, ys, color=color, linewidth=1.4, label=legend(fmt, series["metric"]))
                ax.fill_between(xs, ys, color=color, alpha=0.05)
                n += 1
        if n == 0:
            ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center", color=MUTED, fontsize=12)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(fmt_value(unit)))
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=7))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if a.minutes < 10 else "%H:%M"))
        if n:
            leg = ax.legend(loc="upper left", bbox_to_anchor=(0, -0.1), fontsize=7.5, frameon=False,
                            ncol=min(n, 4), handlelength=1.2, columnspacing=1.0)
            for txt in leg.get_texts():
                txt.set_color(TEXT)
    fig.suptitle(f"Grafana dashboard \"{dash['title']}\" (grafana/ballast.json), key panels, last {a.minutes:g} min",
                 color=TEXT, fontsize=13, x=0.01, y=0.985, ha="left")
    fig.subplots_adjust(left=0.05, right=0.99, top=0.93, bottom=0.06, wspace=0.18, hspace=0.42)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    fig.savefig(a.out, dpi=100, facecolor=BG)
    print(a.out)


if __name__ == "__main__":
    main()
