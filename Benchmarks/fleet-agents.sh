#!/bin/bash
# Fleet figures: N host agents at once against one origin behind git http-backend (records/s),
# and controller failover (SIGKILL of one of two replicas; time until the other holds its
# leases). Runs the test suites FleetScaleTests and ControllerFailoverTests with N agents.
#
#   swift build --build-tests && Benchmarks/fleet-agents.sh [agents] [failover runs]
#
# Needs root (PostgreSQL runs as the postgres user), git-http-backend, python3, PostgreSQL 15.
set -euo pipefail
agents=${1:-200}
runs=${2:-3}
bin=${BULWARK_BIN:-$PWD/.build/debug/bulwark}
tests=${BULWARK_TESTS:-$PWD/.build/debug/bulwarkPackageTests.xctest}
ulimit -n 65536 2>/dev/null || true
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
BULWARK_FLEET_AGENTS=$agents BULWARK_FLEET_DEADLINE=${BULWARK_FLEET_DEADLINE:-1800} BULWARK_BIN=$bin \
    "$tests" --testing-library swift-testing --filter FleetScaleTests 2>&1 | grep -E "fleet:|Expectation failed|recorded an issue|Test run" | cut -c1-1500
for _ in $(seq "$runs"); do
    BULWARK_BIN=$bin "$tests" --testing-library swift-testing --filter ControllerFailoverTests 2>&1 \
        | grep -E "failover:|Expectation failed|Test run" | cut -c1-400
done
