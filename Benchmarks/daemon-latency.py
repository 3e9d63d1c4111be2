#!/usr/bin/env python3
"""Time from a drifting write to the verified fix and its audit commit on origin, with `bulwark run`.

Builds 500 sandbox host trees and a policy of 20 resources bound to each (10,000 resources under
management: 8 SSHDConfig, 5 FileMode, 4 LoginDefs, 3 Sysctl), starts the daemon on loopback,
waits for the first cycle, then injects drifts one after another: `PermitRootLogin yes` written
in place into one target's sshd_config. Each latency runs from the write to the moment origin's
`bulwark/audit` ref moves (the fix verified, committed and pushed). Then it reads the daemon's
resident memory and its CPU use over an idle period.

With `--drift mode` each drift is a `chmod 0644` of that sshd_config instead (its FileMode
resource wants 0600): a fix built from the file's status, not its content, so no wait for the
content to be still (the torn-read guard's 100 ms) is on its path.

Usage: Benchmarks/daemon-latency.py [--bin PATH] [--drifts 1000] [--targets 500] [--idle 30] [--drift content|mode]
Needs root (FileMode chowns to root:shadow) and the git CLI. Everything lives in a temporary
folder and on 127.0.0.1.
"""
import argparse, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

SSHD = """# sshd_config (benchmark)
Port 22
PermitRootLogin no
PermitEmptyPasswords no
MaxAuthTries 4
HostbasedAuthentication no
IgnoreRhosts yes
PermitUserEnvironment no
LoginGraceTime 60
X11Forwarding no
"""
LOGIN_DEFS = "PASS_MAX_DAYS 365\nPASS_MIN_DAYS 1\nPASS_WARN_AGE 7\nUMASK 027\n"
# `admin` (in sudo) logs in with a key: without an account that can log in, the sshd guard
# blocks the PermitRootLogin fix (recorded once as `blocked`) and no drift after it is fixed.
PASSWD = "root:x:0:0:root:/root:/bin/bash\nadmin:x:1000:1000:admin:/home/admin:/bin/bash\n"
GROUP = "root:x:0:\nshadow:x:42:\nsudo:x:27:admin\nadmin:x:1000:\n"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEJ1bHdhcmsgZmxlZXQgYmVuY2htYXJrIGtleSAwMDAw admin\n"

RESOURCES = """apiVersion: bulwark/v1
kind: SSHDConfig
metadata: {{name: sshd-{i}, annotations: {{severity: high}}}}
targets: {{selector: {{role: bench}}}}
spec: {{{key}: "{value}"}}
"""


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def build(work, targets):
    hosts = os.path.join(work, "hosts")
    for t in range(targets):
        root = os.path.join(hosts, f"h{t}")
        write(f"{root}/etc/ssh/sshd_config", SSHD, 0o600)
        write(f"{root}/etc/login.defs", LOGIN_DEFS)
        write(f"{root}/etc/passwd", PASSWD)
        write(f"{root}/etc/group", GROUP)
        write(f"{root}/etc/shadow", "root:*:19000:0:99999:7:::\nadmin:*:19000:0:99999:7:::\n", 0o640)
        write(f"{root}/etc/gshadow", "root:*::\n", 0o640)
        write(f"{root}/etc/shells", "/bin/sh\n/bin/bash\n")
        write(f"{root}/bin/bash", "#!/bin/sh\n", 0o755)
        write(f"{root}/home/admin/.ssh/authorized_keys", KEY, 0o600)
        os.makedirs(f"{root}/etc/sysctl.d", exist_ok=True)
        for path in ("etc/shadow", "etc/gshadow"):
            os.chown(f"{root}/{path}", 0, 42)
    policy = os.path.join(work, "policy")
    docs = []
    sshd = [("PermitRootLogin", "no"), ("PermitEmptyPasswords", "no"), ("MaxAuthTries", "4"),
            ("HostbasedAuthentication", "no"), ("IgnoreRhosts", "yes"), ("PermitUserEnvironment", "no"),
            ("LoginGraceTime", "60"), ("X11Forwarding", "no")]
    for i, (key, value) in enumerate(sshd):
        docs.append(RESOURCES.format(i=i, key=key, value=value))
    for i, (path, mode, group) in enumerate([("/etc/ssh/sshd_config", "0600", "root"), ("/etc/shadow", "0640", "shadow"),
                                             ("/etc/gshadow", "0640", "shadow"), ("/etc/passwd", "0644", "root"),
                                             ("/etc/group", "0644", "root")]):
        docs.append(f"apiVersion: bulwark/v1\nkind: FileMode\nmetadata: {{name: mode-{i}}}\n"
                    f"targets: {{selector: {{role: bench}}}}\nspec: {{path: {path}, mode: \"{mode}\", owner: root, group: {group}}}\n")
    for i, (key, value) in enumerate([("PASS_MAX_DAYS", "365"), ("PASS_MIN_DAYS", "1"), ("PASS_WARN_AGE", "7"), ("UMASK", "027")]):
        docs.append(f"apiVersion: bulwark/v1\nkind: LoginDefs\nmetadata: {{name: login-{i}}}\n"
                    f"targets: {{selector: {{role: bench}}}}\nspec: {{{key}: \"{value}\"}}\n")
    for i, (key, value) in enumerate([("net.ipv4.ip_forward", "0"), ("net.ipv4.tcp_syncookies", "1"), ("kernel.randomize_va_space", "2")]):
        docs.append(f"apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {{name: sysctl-{i}}}\n"
                    f"targets: {{selector: {{role: bench}}}}\nspec: {{{key}: \"{value}\"}}\n")
    write(f"{policy}/desired-state/bench.yaml", "---\n".join(docs))
    inventory = ["apiVersion: bulwark/v1\nkind: Controller\nmetadata: {name: bench}\n"
                 "spec: {kinds: [SSHDConfig, FileMode, LoginDefs, Sysctl], targets: {selector: {role: bench}}, "
                 "interval: 1h, maxChangesPerCycle: 20000}\n"]
    inventory += [f"apiVersion: bulwark/v1\nkind: Target\nmetadata: {{name: h{t}, labels: {{role: bench}}}}\n"
                  f"spec: {{adapter: host, root: {hosts}/h{t}}}\n" for t in range(targets)]
    inventory.append("apiVersion: bulwark/v1\nkind: GlobalLimits\nmetadata: {name: limits}\nspec: {maxChangesPerCycle: 20000}\n")
    write(f"{policy}/controllers/bench.yaml", "---\n".join(inventory))
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.org", GIT_COMMITTER_NAME="b",
               GIT_COMMITTER_EMAIL="b@example.org")
    subprocess.run(["git", "init", "-q", "-b", "main", policy], check=True, env=env)
    subprocess.run(["git", "-C", policy, "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", policy, "commit", "-qm", "bench policy"], check=True, env=env)
    origin = os.path.join(work, "origin.git")
    subprocess.run(["git", "clone", "-q", "--bare", policy, origin], check=True, env=env)
    return hosts, origin


def audit_head(origin):
    try:
        with open(os.path.join(origin, "refs/heads/bulwark/audit")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release", "bulwark"))
    parser.add_argument("--drifts", type=int, default=1000)
    parser.add_argument("--drift", choices=["content", "mode"], default="content")
    parser.add_argument("--targets", type=int, default=500)
    parser.add_argument("--idle", type=int, default=30)
    parser.add_argument("--debounce", type=int, default=20)
    args = parser.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no bulwark binary at {binary}: swift build -c release, or pass --bin")
    work = tempfile.mkdtemp(prefix="bulwark-bench-")
    daemon = None
    try:
        hosts, origin = build(work, args.targets)
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        log = open(os.path.join(work, "daemon.log"), "w")
        started = time.monotonic()
        daemon = subprocess.Popen([binary, "run", "--repo", origin, "--state-dir", os.path.join(work, "state"),
                                   "--listen", f"127.0.0.1:{port}", "--poll", "3600", "--debounce", str(args.debounce),
                                   "--log-level", "warning"], stdout=log, stderr=log)
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).status == 200:
                    break
            except Exception:
                pass
            if daemon.poll() is not None or time.monotonic() - started > 600:
                sys.exit("the daemon did not become ready; see " + log.name)
            time.sleep(0.05)
        print(f"first cycle over {args.targets * 20} resources on {args.targets} targets: {time.monotonic() - started:.1f} s, "
              f"{status(daemon.pid, 'VmRSS'):.1f} MiB resident after it")
        latencies = []
        for n in range(args.drifts):
            path = os.path.join(hosts, f"h{n % args.targets}", "etc/ssh/sshd_config")
            before = audit_head(origin)
            if args.drift == "mode":
                os.chmod(path, 0o644)
            else:
                with open(path, "r+") as f:
                    text = f.read().replace("PermitRootLogin no", "PermitRootLogin yes")
                    f.seek(0); f.truncate(); f.write(text)
            t0 = time.monotonic()
            while audit_head(origin) == before:
                if time.monotonic() - t0 > 30:
                    sys.exit(f"drift {n} was not fixed within 30 s; see {log.name}")
                time.sleep(0.0005)
            latencies.append(time.monotonic() - t0)
            if args.drift == "mode" and os.stat(path).st_mode & 0o777 != 0o600:
                sys.exit(f"drift {n}: audit commit without the fix")
            if "PermitRootLogin no" not in open(path).read():
                sys.exit(f"drift {n}: audit commit without the fix")
        latencies.sort()
        pick = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
        print(f"{args.drift} drift -> verified fix pushed, {len(latencies)} drifts: p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms, "
              f"max {latencies[-1] * 1000:.1f} ms (debounce {args.debounce} ms)")
        print(f"daemon memory: {status(daemon.pid, 'VmRSS'):.1f} MiB resident, {status(daemon.pid, 'VmHWM'):.1f} MiB peak")
        time.sleep(2)
        c0, w0 = cpu_seconds(daemon.pid), time.monotonic()
        time.sleep(args.idle)
        c1, w1 = cpu_seconds(daemon.pid), time.monotonic()
        print(f"idle CPU over {args.idle} s: {100 * (c1 - c0) / (w1 - w0):.2f}% of one core")
    finally:
        if daemon and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                print(f"SIGTERM: exit {daemon.wait(timeout=60)}")
            except subprocess.TimeoutExpired:
                daemon.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
