#!/usr/bin/env python3
"""fleet: plan and apply on N sandbox roots, whole process, as a user runs them.

Builds N sandbox host roots, each drifted on 31 host settings with one resource per setting
(8 sshd keywords, 4 login.defs keys, 7 sysctls with runtime values under proc/sys, 5 file
modes), a policy repository and a local bare origin. Then it runs, each as its own process and
timed with /usr/bin/time -v (wall time and peak RSS):

  plan (drifted)  -> apply (fix, verify, record, push every audit commit)
  -> plan (in sync) -> re-drift every root -> apply again (a second pass onto a longer branch)

With --resources N (and --per-root K, default 200) the revision is N FileMode resources
instead, each bound by name (`targets: {names: [hT]}`) to one root and one file of its own
(etc/bench/fI, drifted to 0666, desired 0640): one revision of N resources on N/K roots.

With --history R the origin's audit branch first gets R existing records (git fast-import,
one commit each with the trailers and a record file, as Benchmarks/audit-index.sh), so that
the same passes are timed on a long branch.

At the end it checks the record: one audit commit per remediation on origin, each with its
Bulwark-Id trailer, and `git fsck --strict` clean.

Usage: Benchmarks/fleet.py [--bin PATH] [--roots 1 10 100] [--history 0] [--keep DIR]
       Benchmarks/fleet.py --resources 20000 [--per-root 200] [--bin PATH] [--keep DIR]
Needs root (FileMode chowns to root:shadow), sshd (for `sshd -t`/`-T`) and the git CLI.
"""
import argparse, os, re, shutil, subprocess, sys, tempfile, time

SSHD_GOOD = [("PermitRootLogin", "no"), ("PermitEmptyPasswords", "no"), ("MaxAuthTries", "4"),
             ("HostbasedAuthentication", "no"), ("IgnoreRhosts", "yes"), ("PermitUserEnvironment", "no"),
             ("LoginGraceTime", "60"), ("X11Forwarding", "no")]
SSHD_BAD = {"PermitRootLogin": "yes", "PermitEmptyPasswords": "yes", "MaxAuthTries": "10",
            "HostbasedAuthentication": "yes", "IgnoreRhosts": "no", "PermitUserEnvironment": "yes",
            "LoginGraceTime": "120", "X11Forwarding": "yes"}
LOGIN_GOOD = [("PASS_MAX_DAYS", "365"), ("PASS_MIN_DAYS", "1"), ("PASS_WARN_AGE", "7"), ("UMASK", "027")]
LOGIN_BAD = {"PASS_MAX_DAYS": "99999", "PASS_MIN_DAYS": "0", "PASS_WARN_AGE": "0", "UMASK": "022"}
SYSCTL_GOOD = [("net.ipv4.ip_forward", "0"), ("net.ipv4.tcp_syncookies", "1"), ("kernel.randomize_va_space", "2"),
               ("net.ipv4.conf.all.accept_redirects", "0"), ("net.ipv4.conf.all.send_redirects", "0"),
               ("net.ipv4.conf.all.accept_source_route", "0"), ("net.ipv4.icmp_echo_ignore_broadcasts", "1")]
SYSCTL_BAD = {"net.ipv4.ip_forward": "1", "net.ipv4.tcp_syncookies": "0", "kernel.randomize_va_space": "0",
              "net.ipv4.conf.all.accept_redirects": "1", "net.ipv4.conf.all.send_redirects": "1",
              "net.ipv4.conf.all.accept_source_route": "1", "net.ipv4.icmp_echo_ignore_broadcasts": "0"}
MODES = [("etc/ssh/sshd_config", "0600", "root", 0o644), ("etc/shadow", "0640", "shadow", 0o644),
         ("etc/gshadow", "0640", "shadow", 0o644), ("etc/passwd", "0644", "root", 0o666),
         ("etc/group", "0644", "root", 0o666)]
# One resource per setting: 24 resources; the issue counts 31 settings because each sysctl is
# both a line in etc/sysctl.d and a runtime value under proc/sys.
SETTINGS = len(SSHD_GOOD) + len(LOGIN_GOOD) + len(SYSCTL_GOOD) + len(MODES)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEJ1bHdhcmsgZmxlZXQgYmVuY2htYXJrIGtleSAwMDAw fleet\n"


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def drift(root):
    """Every one of the 31 settings wrong on this root."""
    sshd = "# sshd_config (fleet benchmark)\nPort 22\nUsePAM yes\n" + "".join(f"{k} {SSHD_BAD[k]}\n" for k, _ in SSHD_GOOD)
    write(f"{root}/etc/ssh/sshd_config", sshd, 0o644)
    write(f"{root}/etc/login.defs", "".join(f"{k} {LOGIN_BAD[k]}\n" for k, _ in LOGIN_GOOD))
    # root without a password or key; `admin` (in sudo) logs in with a key, so no sshd fix locks anyone out.
    write(f"{root}/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nadmin:x:1000:1000:admin:/home/admin:/bin/bash\n", 0o666)
    write(f"{root}/etc/group", "root:x:0:\nshadow:x:42:\nsudo:x:27:admin\nadmin:x:1000:\n", 0o666)
    write(f"{root}/etc/shadow", "root:*:19000:0:99999:7:::\nadmin:*:19000:0:99999:7:::\n", 0o644)
    write(f"{root}/etc/gshadow", "root:*::\n", 0o644)
    write(f"{root}/etc/shells", "/bin/sh\n/bin/bash\n")
    write(f"{root}/home/admin/.ssh/authorized_keys", KEY, 0o600)
    for program in ("bin/bash", "bin/sh"):
        write(f"{root}/{program}", "#!/bin/true\n", 0o755)
    for path in ("etc/shadow", "etc/gshadow"):
        os.chown(f"{root}/{path}", 0, 42)
    os.makedirs(f"{root}/etc/sysctl.d", exist_ok=True)
    try:
        os.unlink(f"{root}/etc/sysctl.d/zz-bulwark.conf")
    except FileNotFoundError:
        pass
    for key, _ in SYSCTL_GOOD:
        write(f"{root}/proc/sys/" + key.replace(".", "/"), SYSCTL_BAD[key] + "\n")


def bench_files(root, count):
    """`count` files of this root's own, each drifted to mode 0666 (its resource wants 0640)."""
    os.makedirs(f"{root}/etc/bench", exist_ok=True)
    for i in range(count):
        path = f"{root}/etc/bench/f{i}"
        if not os.path.exists(path):
            write(path, f"bench {i}\n", 0o666)
        os.chmod(path, 0o666)


def redrift(hosts, roots, per_root):
    for t in range(roots):
        drift(os.path.join(hosts, f"h{t}"))
        if per_root:
            bench_files(os.path.join(hosts, f"h{t}"), per_root)


def build(work, roots, history, per_root=0):
    hosts = os.path.join(work, "hosts")
    redrift(hosts, roots, per_root)
    policy = os.path.join(work, "policy")
    docs = []
    sel = "targets: {selector: {role: fleet}}"
    if per_root:
        return build_resources(work, hosts, policy, roots, per_root, history)
    for i, (key, value) in enumerate(SSHD_GOOD):
        docs.append(f"apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {{name: sshd-{i}, annotations: {{severity: high}}}}\n"
                    f"{sel}\nspec: {{{key}: \"{value}\"}}\n")
    for i, (key, value) in enumerate(LOGIN_GOOD):
        docs.append(f"apiVersion: bulwark/v1\nkind: LoginDefs\nmetadata: {{name: login-{i}}}\n{sel}\nspec: {{{key}: \"{value}\"}}\n")
    for i, (key, value) in enumerate(SYSCTL_GOOD):
        docs.append(f"apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {{name: sysctl-{i}}}\n{sel}\nspec: {{{key}: \"{value}\"}}\n")
    for i, (path, mode, group, _) in enumerate(MODES):
        docs.append(f"apiVersion: bulwark/v1\nkind: FileMode\nmetadata: {{name: mode-{i}}}\n{sel}\n"
                    f"spec: {{path: /{path}, mode: \"{mode}\", owner: root, group: {group}}}\n")
    write(f"{policy}/desired-state/fleet.yaml", "---\n".join(docs))
    return finish(work, hosts, policy, roots, history)


def build_resources(work, hosts, policy, roots, per_root, history):
    """One revision of roots × per_root FileMode resources, each bound by name to one root's own file."""
    docs = [f"apiVersion: bulwark/v1\nkind: FileMode\nmetadata: {{name: h{t}-f{i}}}\ntargets: {{names: [h{t}]}}\n"
            f"spec: {{path: /etc/bench/f{i}, mode: \"0640\", owner: root, group: root}}\n"
            for t in range(roots) for i in range(per_root)]
    # A manifest file holds at most 1,000 documents.
    for start in range(0, len(docs), 1000):
        write(f"{policy}/desired-state/bench-{start // 1000:03d}.yaml", "---\n".join(docs[start:start + 1000]))
    return finish(work, hosts, policy, roots, history)


def finish(work, hosts, policy, roots, history):
    inventory = ["apiVersion: bulwark/v1\nkind: Controller\nmetadata: {name: fleet}\n"
                 "spec: {kinds: [SSHDConfig, FileMode, LoginDefs, Sysctl], targets: {selector: {role: fleet}}, "
                 "interval: 1h, maxChangesPerCycle: 100000}\n",
                 "apiVersion: bulwark/v1\nkind: GlobalLimits\nmetadata: {name: limits}\nspec: {maxChangesPerCycle: 100000}\n"]
    write(f"{policy}/controllers/fleet.yaml", "---\n".join(inventory))
    targets = [f"apiVersion: bulwark/v1\nkind: Target\nmetadata: {{name: h{t}, labels: {{role: fleet}}}}\n"
               f"spec: {{adapter: host, root: {hosts}/h{t}}}\n" for t in range(roots)]
    # A manifest file holds at most 1,000 documents: the targets go 500 to a file.
    for start in range(0, roots, 500):
        write(f"{policy}/controllers/targets-{start // 500:03d}.yaml", "---\n".join(targets[start:start + 500]))
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.org", GIT_COMMITTER_NAME="b",
               GIT_COMMITTER_EMAIL="b@example.org")
    subprocess.run(["git", "init", "-q", "-b", "main", policy], check=True, env=env)
    subprocess.run(["git", "-C", policy, "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", policy, "commit", "-qm", "fleet policy"], check=True, env=env)
    origin = os.path.join(work, "origin.git")
    subprocess.run(["git", "clone", "-q", "--bare", policy, origin], check=True, env=env)
    if history:
        desired = subprocess.run(["git", "-C", policy, "rev-parse", "HEAD"], stdout=subprocess.PIPE, check=True).stdout.decode().strip()
        seed_history(origin, history, desired)
    return hosts, origin


def seed_history(origin, n, desired):
    """n audit records older than any flap window, one commit each (as Benchmarks/audit-index.sh),
    each naming `desired` as its revision (`Bulwark-Desired-Commit`, as every applied record does:
    a new state directory takes the newest one as its baseline)."""
    ulid = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    chunks = []
    for i in range(n):
        t = 1767225600 + i * 60
        rid = "01" + "".join(ulid[(i >> (5 * k)) & 31] for k in range(23, -1, -1))
        day, hour = 1 + (i * 60) // 86400, (i * 60 // 3600) % 24
        body = '{"id": "%s", "decision": "applied", "result": "verified"}\n' % rid
        message = ("remediate(SSHDConfig/bench): h0 drifted -> fixed\n\nBulwark-Id: %s\nBulwark-Decision: applied\n"
                   "Bulwark-Result: verified\nBulwark-Desired-Commit: %s\nBulwark-Detected-At: 2026-01-01T00:00:00.000Z\n"
                   % (rid, desired))
        chunks.append("commit refs/heads/bulwark/audit\ncommitter Bulwark <bulwark@localhost> %d +0000\ndata %d\n%s"
                      % (t, len(message), message))
        chunks.append("M 100644 inline audit/2026/%03d/%02d/%s/%s.json\ndata %d\n%s\n"
                      % (day, hour, rid[-1], rid, len(body), body))
    subprocess.run(["git", "--git-dir", origin, "fast-import", "--quiet"], input="".join(chunks).encode(), check=True)
    subprocess.run(["git", "--git-dir", origin, "repack", "-adq"], check=True)


def timed(binary, command, origin, state, log):
    """Runs `bulwark COMMAND` as a user would; returns (wall s, peak RSS MiB, exit code, CPU s)."""
    args = ["/usr/bin/time", "-v", binary, command, "--repo", origin, "--state-dir", state]
    started = time.monotonic()
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.monotonic() - started
    err = proc.stderr.decode(errors="replace")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([0-9.]+)", err))
    with open(log, "ab") as f:
        f.write(f"\n== {command}\n".encode() + proc.stdout + proc.stderr)
    return wall, (int(rss.group(1)) / 1024 if rss else float("nan")), proc.returncode, cpu


def audit_commits(origin):
    out = subprocess.run(["git", "--git-dir", origin, "rev-list", "--count", "bulwark/audit"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return int(out.stdout) if out.returncode == 0 else 0


def check_record(origin, since):
    """Every audit commit since `since` has one record file and a Bulwark-Id; fsck --strict is clean."""
    fsck = subprocess.run(["git", "--git-dir", origin, "fsck", "--strict", "--no-progress"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = subprocess.run(["git", "--git-dir", origin, "log", "--format=%(trailers:key=Bulwark-Id,valueonly)%x00",
                          f"{since}..bulwark/audit" if since else "bulwark/audit"], stdout=subprocess.PIPE, check=True)
    ids = [x.strip() for x in log.stdout.decode().split("\0") if x.strip()]
    return fsck.returncode == 0 and not fsck.stdout.strip(), len(ids), len(set(ids))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release", "bulwark"))
    parser.add_argument("--roots", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--history", type=int, default=0)
    parser.add_argument("--resources", type=int, default=0, help="N FileMode resources in one revision instead")
    parser.add_argument("--per-root", type=int, default=200, help="with --resources: resources per root")
    parser.add_argument("--keep", help="a folder to build in and keep (one subfolder per N)")
    args = parser.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no bulwark binary at {binary}: swift build -c release, or pass --bin")
    per_root = args.per_root if args.resources else 0
    if args.resources:
        args.roots = [max(1, -(-args.resources // per_root))]
        print(f"fleet: {args.roots[0] * per_root} FileMode resources in one revision, {per_root} per root, "
              f"history {args.history} records, {binary}")
    else:
        print(f"fleet: {SETTINGS} resources (31 settings) per root, history {args.history} records, {binary}")
    print(f"{'roots':>5} {'step':<22} {'wall s':>8} {'peak MiB':>9} {'exit':>4} {'audit commits':>14} {'CPU s':>7}")
    for roots in args.roots:
        work = os.path.join(args.keep, f"n{roots}") if args.keep else tempfile.mkdtemp(prefix="bulwark-fleet-")
        if args.keep:
            shutil.rmtree(work, ignore_errors=True)
            os.makedirs(work)
        try:
            hosts, origin = build(work, roots, args.history, per_root)
            state, log = os.path.join(work, "state"), os.path.join(work, "bulwark.log")
            before = audit_commits(origin)
            head = subprocess.run(["git", "--git-dir", origin, "rev-parse", "-q", "--verify", "bulwark/audit"],
                                  stdout=subprocess.PIPE).stdout.decode().strip()
            steps = [("plan (drifted)", "plan"), ("apply", "apply"), ("plan (in sync)", "plan"),
                     ("re-drift", None), ("apply (second pass)", "apply"), ("plan (after 2nd pass)", "plan")]
            for label, command in steps:
                if command is None:
                    redrift(hosts, roots, per_root)
                    continue
                wall, rss, code, cpu = timed(binary, command, origin, state, log)
                print(f"{roots:>5} {label:<22} {wall:>8.2f} {rss:>9.1f} {code:>4} {audit_commits(origin) - before:>14} {cpu:>7.2f}",
                      flush=True)
            clean, count, unique = check_record(origin, head)
            print(f"{roots:>5} record: {count} audit commits with a Bulwark-Id ({unique} distinct), "
                  f"expected {2 * roots * (per_root or SETTINGS)}; git fsck --strict {'clean' if clean else 'NOT CLEAN'}", flush=True)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
