#!/usr/bin/env python3
"""Replays a labelled JSONL corpus (the format of ../shared/corpora) through a running edge, from
outside, the way the corpora's own projects score a WAF: each request is sent as recorded, on its
own connection, and an answer of 403 counts as blocked.

`portcullis replay` measures the engine alone; this measures the whole edge (protocol checks,
limits, body handling, HTTP parsing), so a request the edge refuses for another reason shows up
too: the status histogram lists every answer, and 4xx answers other than 403 are named.

    bench/edge_replay.py --port 8443 ../shared/corpora/web-browsing-benign.jsonl
    bench/edge_replay.py --plain --port 8080 --limit 2000 corpus.jsonl

Standard library only. Talks to 127.0.0.1 unless told otherwise.
"""
import argparse
import base64
import collections
import concurrent.futures
import json
import socket
import ssl
import sys


def send(raw, host, port, tls, timeout):
    """Sends one raw request on a new connection; returns the status code (0: no answer)."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return 0
    try:
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["http/1.1"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        sock.sendall(raw)
        head = b""
        while b"\r\n" not in head and len(head) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        parts = head.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    except (OSError, ssl.SSLError, ValueError):
        return 0
    finally:
        sock.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", nargs="+")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8443)
    ap.add_argument("--plain", action="store_true", help="plain HTTP instead of TLS")
    ap.add_argument("--limit", type=int, default=0, help="at most this many requests per file")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args()

    cases = []
    for path in args.corpus:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f):
                if args.limit and n >= args.limit:
                    break
                d = json.loads(line)
                cases.append((d["id"], d["label"], d.get("category", ""), base64.b64decode(d["raw"])))

    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        statuses = list(pool.map(lambda c: send(c[3], args.host, args.port, not args.plain, args.timeout), cases))

    report = {"statuses": {}, "attack": {"n": 0, "blocked": 0}, "benign": {"n": 0, "blocked": 0}, "refused": []}
    hist = collections.Counter()
    for (cid, label, category, _), status in zip(cases, statuses):
        hist[(label, status)] += 1
        side = report["attack" if label == "attack" else "benign"]
        side["n"] += 1
        side["blocked"] += status == 403
        if label == "benign" and (status == 0 or (400 <= status < 600 and status != 403)):
            report["refused"].append({"id": cid, "category": category, "status": status})
    report["statuses"] = {f"{label} {status}": n for (label, status), n in sorted(hist.items())}
    if report["attack"]["n"]:
        report["attack"]["tpr"] = report["attack"]["blocked"] / report["attack"]["n"]
    if report["benign"]["n"]:
        report["benign"]["tnr"] = 1 - report["benign"]["blocked"] / report["benign"]["n"]

    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
        return
    for key, n in report["statuses"].items():
        print(f"{key:<16} {n}")
    for side in ("attack", "benign"):
        s = report[side]
        if s["n"]:
            rate = s.get("tpr", s.get("tnr"))
            name = "TPR" if side == "attack" else "TNR"
            print(f"{side}: {s['n']} requests, {s['blocked']} answered 403, {name} {rate:.4%}")
    if report["refused"]:
        print(f"benign requests answered with another error (or no answer): {len(report['refused'])}")
        for r in report["refused"][:20]:
            print(f"  {r['status']} {r['id']} {r['category']}")


if __name__ == "__main__":
    main()
