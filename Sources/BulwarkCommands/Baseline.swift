internal import Foundation

/// The shipped baseline, compiled in (see `scripts/embed-baseline`).
enum Baseline {
    /// The sandbox root the shipped target inventory names.
    static let shippedRoot = "/var/lib/bulwark/sandbox"

    /// The baseline's files, with the `local` host target rooted at `hostRoot` when given.
    static func files(hostRoot: String? = nil) -> [String: [UInt8]] {
        var result: [String: [UInt8]] = [:]
        for file in files {
            var text = file.contents
            if let hostRoot, file.path == "controllers/targets.yaml" {
                text = text.replacingOccurrences(of: "root: \(shippedRoot)", with: "root: \(hostRoot)")
            }
            result[file.path] = Array(text.utf8)
        }
        return result
    }
}
