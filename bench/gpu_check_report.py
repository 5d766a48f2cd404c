#!/usr/bin/env python3
"""Collects what scripts/gpu-check.sh wrote into OUT_DIR into results.json and results.md.

    python3 bench/gpu_check_report.py OUT_DIR

Reads environment.txt, steps.tsv, logs/<step>.out (stdout: JSON reports) and logs/<step>.log
(stderr), runs/train-<device>/metrics.csv. Every section is written, also when its step failed
(then with the step's exit status and the last lines of its log), so a partial run still says
what it measured. Standard library only.
"""
import csv
import json
import os
import sys


def read(path, default=""):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def json_doc(text):
    """The JSON document in a step's stdout (a report printed last), or None."""
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        start = text.find("{")
        try:
            return json.loads(text[start:]) if start >= 0 else None
        except ValueError:
            return None


def tail(text, n=6):
    return [l for l in text.strip().splitlines()[-n:]]


class Out:
    def __init__(self, root):
        self.root = root
        self.steps = {}
        rows = read(os.path.join(root, "steps.tsv")).strip().splitlines()[1:]
        for row in rows:
            name, status, secs = row.split("\t")
            self.steps[name] = {"status": int(status), "seconds": int(secs)}

    def stdout(self, step):
        return read(os.path.join(self.root, "logs", step + ".out"))

    def stderr(self, step):
        return read(os.path.join(self.root, "logs", step + ".log"))

    def failure(self, step):
        s = self.steps.get(step)
        if s is None:
            return {"step": step, "status": "not run"}
        if s["status"] == 0:
            return None
        return {"step": step, "status": s["status"], "seconds": s["seconds"], "log_tail": tail(self.stderr(step))}


def selftest_section(out):
    section = {}
    for p in ("fp32", "tf32", "bf16"):
        step = f"selftest-{p}"
        doc = json_doc(out.stdout(step))
        if doc is None:
            if step not in out.steps:
                continue  # not run (bf16 on a CPU dry run)
            section[p] = {"error": out.failure(step) or {"step": step, "status": "no report"}}
            continue
        checks = doc["checks"]
        worst = {}
        for c in checks:
            g = c["group"]
            if c.get("error") is not None and (g not in worst or c["error"] > worst[g]["error"]):
                worst[g] = {"name": c["name"], "error": c["error"], "bound": c["bound"]}
        section[p] = {
            "device": doc["device"],
            "checks": len(checks),
            "failed": [c for c in checks if not c["ok"]],
            "worst_per_group": worst,
            "skipped": doc.get("skipped", []),
        }
    return section


def paired(ours, theirs):
    rows = []
    theirs_by = {(r["name"], r["batch"], r["size"]): r for r in (theirs or {}).get("results", [])}
    for r in (ours or {}).get("results", []):
        t = theirs_by.get((r["name"], r["batch"], r["size"]))
        rows.append({
            "name": r["name"], "batch": r["batch"], "size": r["size"], "ours_ms": r["median_ms"],
            "torch_ms": t["median_ms"] if t else None,
            "ratio": r["median_ms"] / t["median_ms"] if t and t["median_ms"] > 0 else None,
        })
    return rows


def bench_section(out):
    section = {}
    for step in sorted(out.steps):
        if not step.startswith("bench-ours-"):
            continue
        suffix = step[len("bench-ours-"):]
        ours = json_doc(out.stdout(step))
        theirs = json_doc(out.stdout(f"bench-torch-{suffix}"))
        section[suffix] = {
            "ours_device": (ours or {}).get("device"), "torch_device": (theirs or {}).get("device"),
            "rows": paired(ours, theirs),
            "errors": [e for e in (out.failure(step), out.failure(f"bench-torch-{suffix}")) if e],
        }
    return section


def epoch_section(out):
    ours, theirs = json_doc(out.stdout("epoch-ours")), json_doc(out.stdout("epoch-torch"))
    rows = [r for r in paired(ours, theirs) if r["name"].startswith(("epoch/", "teacher_cache_build/"))]
    return {"rows": rows, "errors": [e for e in (out.failure("epoch-ours"), out.failure("epoch-torch")) if e]}


def training_section(out):
    section = {}
    runs = os.path.join(out.root, "runs")
    for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
        path = os.path.join(runs, name, "metrics.csv")
        epochs = []
        try:
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    if row["kind"] == "epoch":
                        epochs.append({k: row[k] for k in ("epoch", "loss", "val_loss", "miou", "elapsed_s")})
        except OSError:
            pass
        section[name] = {"epochs": epochs, "error": out.failure(name)}
    return section


def fmt(x, digits=1):
    return "—" if x is None else f"{x:.{digits}f}"


def markdown(doc):
    md = ["# GPU check results", "", "```", doc["environment"].strip(), "```", ""]
    md += ["## Steps", "", "| step | exit | seconds |", "|---|---:|---:|"]
    md += [f"| {k} | {v['status']} | {v['seconds']} |" for k, v in doc["steps"].items()]
    md += ["", "## selftest (max relative error per group; bounds in `segdistill selftest`)", ""]
    for p, s in doc["selftest"].items():
        if "error" in s:
            md += [f"- **{p}**: no report — {json.dumps(s['error'])}"]
            continue
        verdict = "all passed" if not s["failed"] else f"**{len(s['failed'])} failed**"
        md += [f"- **{p}** on {s['device']}: {s['checks']} checks, {verdict}"]
        for g, w in s["worst_per_group"].items():
            md += [f"  - {g}: worst {w['error']:.2e} (bound {w['bound']:.0e}) at `{w['name']}`"]
        for c in s["failed"][:20]:
            md += [f"  - FAIL `{c['name']}`: {c.get('error')} > {c['bound']} {c.get('error_message') or ''}"]
        for sk in s["skipped"]:
            md += [f"  - skipped: {sk}"]
    for title, section in [(f"bench, batch {k.lstrip('b')}", v) for k, v in doc["bench"].items()] + [("epochs", doc["epochs"])]:
        md += ["", f"## {title} (median ms; ratio = segdistill / PyTorch, < 1 is faster)", ""]
        md += ["| measurement | batch | size | segdistill ms | PyTorch ms | ratio |", "|---|---:|---:|---:|---:|---:|"]
        for r in section["rows"]:
            md += [f"| {r['name']} | {r['batch']} | {r['size']} | {fmt(r['ours_ms'])} | {fmt(r['torch_ms'])} | "
                   f"{fmt(r['ratio'], 2)} |"]
        for e in section["errors"]:
            md += ["", f"- {json.dumps(e)}"]
    md += ["", "## 2-epoch demo training, same seed", ""]
    md += ["| run | epoch | train loss | val loss | mIoU | elapsed s |", "|---|---:|---:|---:|---:|---:|"]
    for name, t in doc["training"].items():
        for e in t["epochs"]:
            num = lambda k: fmt(float(e[k]), 4) if e[k] not in ("", None) else "—"
            md += [f"| {name} | {e['epoch']} | {num('loss')} | {num('val_loss')} | {num('miou')} | {num('elapsed_s')} |"]
        if t["error"]:
            md += [f"| {name} | failed: {json.dumps(t['error'])} | | | | |"]
    return "\n".join(md) + "\n"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Out(sys.argv[1])
    doc = {
        "environment": read(os.path.join(out.root, "environment.txt")),
        "steps": out.steps,
        "selftest": selftest_section(out),
        "bench": bench_section(out),
        "epochs": epoch_section(out),
        "training": training_section(out),
    }
    for name, text in (("results.json", json.dumps(doc, indent=2)), ("results.md", markdown(doc))):
        tmp = os.path.join(out.root, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(out.root, name))


if __name__ == "__main__":
    main()
