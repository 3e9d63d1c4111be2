#!/usr/bin/env python3
"""A/B: alternate `bulwark apply` runs of binaries on one fleet fixture, each from the same snapshot.
Usage: ab.py WORK ROOTS ROUNDS BIN...   (env PER_ROOT=K for the --resources shape, HISTORY=R,
KEPT_ANSWERS=1: each run starts with the sshd answers the run before it kept in its state
directory, as an apply after an earlier plan or apply does; without it, none, as a new state directory)
WORK is created if missing: hosts, origin.git, and a snapshot (origin + a planned state dir) that
every run starts from, so no run sees another's records (the flap breaker would stop fixes)."""
import os, sys, subprocess, shutil
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleet
work, roots, rounds, bins = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
per_root = int(os.environ.get("PER_ROOT", "0"))
history = int(os.environ.get("HISTORY", "0"))
kept_answers = os.environ.get("KEPT_ANSWERS") == "1"
answers = os.path.join(work, "kept-sshd-answers")
snap = os.path.join(work, "snapshot")
hosts, origin, state = os.path.join(work, "hosts"), os.path.join(work, "origin.git"), os.path.join(work, "state")
if not os.path.exists(snap):
    os.makedirs(work, exist_ok=True)
    fleet.build(work, roots, history, per_root)
    fleet.timed(bins[0], "plan", origin, state, os.path.join(work, "prep.log"))
    os.makedirs(snap)
    subprocess.run(["cp", "-a", origin, state, snap], check=True)
for r in range(rounds):
    for i, b in enumerate(bins):
        for d in (origin, state):
            shutil.rmtree(d, ignore_errors=True)
        subprocess.run(["cp", "-a", os.path.join(snap, "origin.git"), os.path.join(snap, "state"), work], check=True)
        if kept_answers and os.path.isdir(answers):
            subprocess.run(["cp", "-a", answers, os.path.join(state, "sshd-answers")], check=True)
        fleet.redrift(hosts, roots, per_root)
        subprocess.run(["sync"])
        # Each binary wholly in the page cache, as right after it is installed: the kernel maps up
        # to 64 KiB around each page a process touches, but only pages already cached, so a
        # binary's resident size depended on what earlier runs had left in the cache.
        with open(b, "rb") as f:
            while f.read(1 << 20):
                pass
        log = os.path.join(work, f"ab{i}.log")
        wall, rss, rc, cpu = fleet.timed(b, "apply", origin, state, log)
        n = fleet.audit_commits(origin)
        if kept_answers and os.path.isdir(os.path.join(state, "sshd-answers")):
            shutil.rmtree(answers, ignore_errors=True)
            subprocess.run(["cp", "-a", os.path.join(state, "sshd-answers"), answers], check=True)
        print(f"round {r} {os.path.basename(b)}: apply {wall:.2f} s, {rss:.1f} MiB, cpu {cpu:.2f} s, exit {rc}, {n} commits", flush=True)
