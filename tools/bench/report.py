#!/usr/bin/env python3
"""Summarises a bench-vs-kernel run: results JSON and a gnuplot PNG.

Input: the run's metadata (JSON object), one JSON object per measurement
(JSON lines: path, rep, metric, value, unit, cpu, idle_pre_pct, loadavg,
extra) and the routers' last stats files (stats-<kind>-<rep>-<host>.json).
Output: one JSON document with every run, median/min/max per metric and
path, and each vxrouter median as a ratio of the kernel's from the same run;
and a PNG with one panel per metric (bars = median, error bars = min..max).
Standard library only; the chart is drawn by gnuplot (package gnuplot-nox).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

# (metric key, panel title, unit, which way is better)
METRICS = [
    ("udp64_pps", "64-byte UDP received", "Mpkt/s", "higher"),
    ("tcp_1stream", "TCP, 1 stream", "Gbit/s", "higher"),
    ("tcp_4stream", "TCP, 4 streams", "Gbit/s", "higher"),
    ("rtt_p50", "UDP RTT p50", "us", "lower"),
    ("rtt_p99", "UDP RTT p99", "us", "lower"),
    ("cpu_udp64", "CPU busy during UDP run", "% of 2 cores", "lower"),
    ("cpu_tcp_1stream", "CPU busy during TCP 1-stream", "% of 2 cores", "lower"),
]
COLOURS = {
    "kernel": "#4d4d4d",
    "routed": "#bdbdbd",
    "vxr-veth": "#1f77b4",
    "vxr-tun": "#ff7f0e",
    "vxr-veth-udp": "#2ca02c",
    "vxr-tun-udp": "#d62728",
    "vxr-vethoff-udp": "#9467bd",
}


def summary(values):
    """median/min/max/n of a list of numbers (None when empty)."""
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def load_runs(path):
    runs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                runs.append(json.loads(line))
    return runs


def series(runs):
    """{metric: {path: [values]}} including the derived CPU metrics."""
    out = {}
    for r in runs:
        if r.get("value") is None:
            continue
        out.setdefault(r["metric"], {}).setdefault(r["path"], []).append(r["value"])
        cpu_all = (r.get("cpu") or {}).get("all", {}).get("busy")
        if cpu_all is not None and r["metric"] in ("udp64_pps", "tcp_1stream", "tcp_4stream", "rtt_p50"):
            key = {"udp64_pps": "cpu_udp64", "tcp_1stream": "cpu_tcp_1stream",
                   "tcp_4stream": "cpu_tcp_4stream", "rtt_p50": "cpu_rtt"}[r["metric"]]
            out.setdefault(key, {}).setdefault(r["path"], []).append(cpu_all)
    return out


def colour_of(path):
    """The path's bar colour; a PATH@base run gets a paler shade of PATH's."""
    base = path.endswith("@base")
    c = COLOURS.get(path[: -len("@base")] if base else path, "#2ca02c")
    if not base:
        return c
    rgb = [int(c[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{(v + 2 * 255) // 3:02x}" for v in rgb)


def load_stats(stats_dir):
    stats = {}
    if not stats_dir or not os.path.isdir(stats_dir):
        return stats
    for name in sorted(os.listdir(stats_dir)):
        if name.startswith("stats-") and name.endswith(".json"):
            try:
                with open(os.path.join(stats_dir, name), encoding="utf-8") as f:
                    stats[name[len("stats-"):-len(".json")]] = json.load(f)
            except (OSError, ValueError):
                continue
    return stats


def chart(doc, png):
    """Draws one panel per metric with gnuplot; returns False if it cannot."""
    gnuplot = shutil.which("gnuplot")
    if gnuplot is None:
        print("report.py: gnuplot not found, no PNG (install gnuplot-nox)", file=sys.stderr)
        return False
    paths = doc["paths"]
    panels = [m for m in METRICS if m[0] in doc["summary"]]
    if not panels:
        return False
    cols = 4 if len(panels) > 4 else len(panels)
    rows = (len(panels) + cols - 1) // cols
    with tempfile.TemporaryDirectory(prefix="bvk-plot.") as tmp:
        script = [
            f"set terminal pngcairo size {cols * 380},{rows * 340 + 60} font 'sans,10'",
            f"set output '{png}'",
            "set style fill solid 0.85 border -1",
            "set boxwidth 0.7",
            "set grid ytics lc rgb '#dddddd'",
            "set key off",
            "set yrange [0:*]",
            "set xtics nomirror rotate by -30 font 'sans,9'",
            "set ytics nomirror",
            "set offsets 0.5, 0.5, graph 0.12, 0",
            f"set multiplot layout {rows},{cols} title \"{doc['title']}\" font 'sans,11'",
        ]
        for i, (key, title, unit, better) in enumerate(panels):
            data = os.path.join(tmp, f"{i}.dat")
            scale = 1e6 if key == "udp64_pps" else 1.0
            with open(data, "w", encoding="utf-8") as f:
                for x, p in enumerate(paths):
                    s = doc["summary"][key].get(p)
                    if s is None:
                        continue
                    colour = int(colour_of(p)[1:], 16)
                    # '@' is a gnuplot text escape: PATH@base reads "PATH (base)".
                    label = p.replace("@base", " (base)")
                    f.write(f"{x} \"{label}\" {s['median'] / scale} {s['min'] / scale} {s['max'] / scale} {colour}\n")
            script += [
                f"set title \"{title} ({better} is better)\"",
                f"set ylabel \"{unit}\"",
                f"plot '{data}' using 1:3:6:xtic(2) with boxes lc rgb variable, "
                f"'' using 1:3:4:5 with yerrorbars lc rgb 'black' pt 7 ps 0.4 lw 1.5, "
                f"'' using 1:5:(sprintf('%.3g', $3)) with labels offset 0,0.8 font 'sans,9'",
            ]
        script.append("unset multiplot")
        gp = os.path.join(tmp, "chart.gp")
        with open(gp, "w", encoding="utf-8") as f:
            f.write("\n".join(script) + "\n")
        res = subprocess.run([gnuplot, gp], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            print(f"report.py: gnuplot failed: {res.stderr.strip()}", file=sys.stderr)
            return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meta")
    ap.add_argument("--runs")
    ap.add_argument("--stats-dir")
    ap.add_argument("--json")
    ap.add_argument("--png")
    ap.add_argument("--replot", help="redraw the PNG of a results JSON this script wrote")
    a = ap.parse_args()
    if a.replot:
        with open(a.replot, encoding="utf-8") as f:
            doc = json.load(f)
        return 0 if chart(doc, a.png) else 1
    if not (a.meta and a.runs and a.json):
        ap.error("--meta, --runs and --json are needed (or --replot with --png)")

    with open(a.meta, encoding="utf-8") as f:
        doc = json.load(f)
    runs = load_runs(a.runs)
    ser = series(runs)
    doc["summary"] = {m: {p: summary(v) for p, v in by_path.items()} for m, by_path in ser.items()}
    ratios = {}
    for m, by_path in doc["summary"].items():
        k = by_path.get("kernel")
        if not k or not k["median"]:
            continue
        for p, s in by_path.items():
            if p != "kernel" and s:
                ratios.setdefault(m, {})[p] = round(s["median"] / k["median"], 3)
    doc["vs_kernel_median_ratio"] = ratios
    doc["units"] = {m: u for m, _, u, _ in METRICS}
    doc["units"].update({"cpu_tcp_4stream": "% of all cores", "cpu_rtt": "% of all cores"})
    doc["runs"] = runs
    doc["router_stats"] = load_stats(a.stats_dir)
    doc["title"] = (f"bench-vs-kernel {doc.get('date', '')}: median of {doc.get('repeat')} "
                    f"x {doc.get('secs')} s, error bars min..max, load avg {doc.get('loadavg_start', '?')}")
    with open(a.json, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    for key, title, unit, _ in METRICS:
        by_path = doc["summary"].get(key)
        if not by_path:
            continue
        scale = 1e6 if key == "udp64_pps" else 1.0
        cells = []
        for p in doc["paths"]:
            s = by_path.get(p)
            if s:
                r = ratios.get(key, {}).get(p)
                cells.append(f"{p} {s['median'] / scale:.3g} [{s['min'] / scale:.3g}..{s['max'] / scale:.3g}]"
                             + (f" ({r:.2f}x)" if r is not None else ""))
        print(f"{title:32s} {unit:13s} " + "  ".join(cells))
    if a.png and not chart(doc, a.png):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
