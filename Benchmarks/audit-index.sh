#!/usr/bin/env bash
# `bulwark plan` and `bulwark apply` against an origin whose audit branch already holds many
# records. The audit index (state/audit-index) is append-only: a pass appends the ids it
# recorded; a lookup (held, blocked or failed decisions already recorded?) reads it once; a
# missing or damaged index is rebuilt from git (one walk of the branch) only when a lookup needs it.
#
# Usage: Benchmarks/audit-index.sh [records] [bulwark binary] [work directory]
#   (defaults: 20000, .build/release/bulwark, a temporary directory removed at the end)
# Prints the time of plans and applies; the last apply runs with the index removed (a walk of
# the branch if that apply has anything to look up).
# Given a work directory, it is kept, so that the plans can be timed again with another tool:
#   bulwark plan|apply --repo WORK/origin.git --state-dir WORK/state
set -euo pipefail
n=${1:-20000}
bin=$(realpath "${2:-$(dirname "$0")/../.build/release/bulwark}")
if [ -n "${3:-}" ]; then work=$3; mkdir -p "$work"; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi

echo "== fixture: a policy repository and $n audit records (git fast-import)"
mkdir -p "$work/host/etc/ssh"   # a small host tree for the target `local`
printf 'PermitRootLogin yes\nPasswordAuthentication yes\n' > "$work/host/etc/ssh/sshd_config"
printf 'PASS_MAX_DAYS 99999\n' > "$work/host/etc/login.defs"
printf 'root:x:0:0:root:/root:/bin/bash\n' > "$work/host/etc/passwd"
"$bin" init "$work/policy" --host-root "$work/host" >/dev/null
git clone -q --bare "$work/policy" "$work/origin.git"
python3 - "$n" "$work/stream" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
ulid = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
with open(path, "w") as out:
    for i in range(n):
        t = 1767225600 + i * 60           # one record a minute, from 2026-01-01: older than any flap window
        rid = "01" + "".join(ulid[(i >> (5 * k)) & 31] for k in range(23, -1, -1))
        day, hour = 1 + (i * 60) // 86400, (i * 60 // 3600) % 24
        body = '{"id": "%s", "decision": "applied", "result": "verified"}\n' % rid
        message = ("remediate(SSHDConfig/bench): local drifted -> fixed\n\nBulwark-Id: %s\nBulwark-Decision: applied\n"
                   "Bulwark-Result: verified\nBulwark-Detected-At: 2026-01-01T00:00:00.000Z\n" % rid)
        out.write("commit refs/heads/bulwark/audit\ncommitter Bulwark <bulwark@localhost> %d +0000\ndata %d\n%s" % (t, len(message), message))
        out.write("M 100644 inline audit/2026/%03d/%02d/%s/%s.json\ndata %d\n%s\n" % (day, hour, rid[-1], rid, len(body), body))
PY
git --git-dir "$work/origin.git" fast-import --quiet < "$work/stream"
rm "$work/stream"
echo "audit records on the origin: $(git --git-dir "$work/origin.git" rev-list --count bulwark/audit)"

run() { "$bin" "$1" --repo "$work/origin.git" --state-dir "$work/state" >/dev/null 2>&1 || [ $? -eq 2 ]; }
seconds() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); python3 -c "print(f'{float(\"$e\") - float(\"$s\"):.2f} s')"; }

# plan reads only the recent end of the audit branch (flap window, newest fix): no index needed.
echo "first plan (clones the origin):                       $(seconds run plan)"
echo "plan:                                                 $(seconds run plan)"
# apply asks, for every held or blocked decision and failure, whether it is already recorded.
echo "first apply (fixes, records, writes the index):       $(seconds run apply)"
echo "apply with the index (nothing new to record):         $(seconds run apply)"
rm "$work/state/audit-index"
echo "apply with the index removed (rebuilt if looked up): $(seconds run apply)"
