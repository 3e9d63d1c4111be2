#!/usr/bin/env bash
# Audit commits per second: Bulwark (libgit2, in process) against the git CLI doing the same
# work the way a shell-based remediation tool would (hash-object, a temporary index,
# write-tree, commit-tree, update-ref per record), each onto a branch already holding
# 100,000 records. Usage: Benchmarks/compare-audit-commits.sh [commits]   (default 300)
set -euo pipefail
cd "$(dirname "$0")"
n=${1:-300}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== git CLI: seeding 100,000 records with git fast-import"
git init -q --bare "$work/peer.git"
python3 - "$work/stream" <<'PY'
import sys
with open(sys.argv[1], "w") as out:
    out.write("commit refs/heads/bulwark/audit\ncommitter Bulwark <bulwark@localhost> 1767225600 +0000\ndata 5\nseed\n")
    for i in range(100_000):
        day = 1 + (i * 315) // 86400
        body = '{"id": "%08d", "decision": "applied", "result": "verified"}\n' % i
        out.write("M 100644 inline audit/2026/%03d/%02d/%s/%08d.json\ndata %d\n%s\n" % (day, (i * 315 // 3600) % 24, "0123456789ABCDEFGHJKMNPQRSTVWXYZ"[i % 32], i, len(body), body))
PY
git --git-dir "$work/peer.git" fast-import --quiet < "$work/stream"

echo "== git CLI: $n audit commits"
export GIT_DIR="$work/peer.git" GIT_INDEX_FILE="$work/index" GIT_AUTHOR_NAME=Bulwark GIT_AUTHOR_EMAIL=bulwark@localhost \
  GIT_COMMITTER_NAME=Bulwark GIT_COMMITTER_EMAIL=bulwark@localhost
git read-tree bulwark/audit
start=$(date +%s.%N)
for i in $(seq 1 "$n"); do
  parent=$(git rev-parse bulwark/audit)
  blob=$(printf '{"id": "new-%d", "decision": "applied", "result": "verified"}\n' "$i" | git hash-object -w --stdin)
  git update-index --add --cacheinfo "100644,$blob,audit/2026/11/22/20/$((i % 32))/new-$i.json"
  tree=$(git write-tree)
  commit=$(printf 'remediate(X/y): t a -> b\n\nBulwark-Id: new-%d\nBulwark-Result: verified\n' "$i" | git commit-tree "$tree" -p "$parent")
  git update-ref refs/heads/bulwark/audit "$commit" "$parent"
done
end=$(date +%s.%N)
unset GIT_DIR GIT_INDEX_FILE
python3 -c "import sys; n=int(sys.argv[1]); s=float(sys.argv[3])-float(sys.argv[2]); print(f'git CLI: {n} commits in {s:.2f} s = {n/s:.0f} commits/s')" "$n" "$start" "$end"

echo "== Bulwark (package-benchmark, 1,000 commits per sample)"
swift package --allow-writing-to-package-directory benchmark --filter 'audit.*' --no-progress 2>&1 \
  | grep -E 'wall clock' | awk -F'│' '{gsub(/ /,"",$5); printf "Bulwark: 1000 commits in %s ms (p50) = %.0f commits/s\n", $5, 1000000/$5}'
