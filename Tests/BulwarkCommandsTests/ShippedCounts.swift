@testable import BulwarkCommands
import BulwarkTestSupport
import Foundation

/// Counts derived from the shipped baseline rather than written by hand, so that a manifest
/// added to the baseline changes what the tests expect by itself.
enum ShippedCounts {
    /// The resources `bulwark validate` finds in a fresh `bulwark init`: one a YAML document
    /// under `desired-state/`.
    static var resources: Int {
        Baseline.files().filter { $0.key.hasPrefix("desired-state/") }.values.reduce(0) { count, bytes in
            count + String(decoding: bytes, as: UTF8.self).split(separator: "\n").filter { $0.hasPrefix("kind: ") }.count
        }
    }
}

extension Scenario {
    /// What `plan --output json` says of the drifted demo host before anything is applied, read
    /// with a state folder of its own (the scenario's is left as it was).
    struct Planned {
        /// Resources bound to the host (in sync and drifted).
        var bound: Int
        /// Drift the first `apply` fixes (decision applied, or held in approve mode).
        var fixes: Int
        /// Those fixes by kind (`SSHDConfig`: 10).
        var fixesByKind: [String: Int]
    }

    func planned() throws -> Planned {
        let out = try bulwark(["plan", "--repo", origin, "--state-dir", dir + "/count-state-\(UUID().uuidString.prefix(8))", "--output", "json"])
        guard out.status == 0 || out.status == 2,
              let report = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any],
              let inSync = report["inSync"] as? Int, let drift = report["drift"] as? [[String: Any]] else {
            throw SupportError("plan --output json failed: \(out.stderr)")
        }
        let fixed = drift.filter { ["applied", "held"].contains($0["decision"] as? String ?? "") }
        let kinds = fixed.compactMap { ($0["resource"] as? String)?.split(separator: "/").first.map(String.init) }
        return Planned(bound: inSync + drift.count, fixes: fixed.count, fixesByKind: Dictionary(kinds.map { ($0, 1) }, uniquingKeysWith: +))
    }
}
