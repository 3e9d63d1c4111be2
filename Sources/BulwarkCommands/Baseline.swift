internal import BulwarkBaseline
internal import BulwarkCore
internal import Foundation

/// The shipped baseline, compiled in as SwiftPM resources (see `ShippedBaseline`).
enum Baseline {
    /// The sandbox root the shipped target inventory names.
    static let shippedRoot = "/var/lib/bulwark/sandbox"

    /// The baseline's files, with the `local` host target rooted at `hostRoot` when given.
    /// The shipped files as text (they are UTF-8 YAML).
    static let files: [(path: String, contents: String)] = ShippedBaseline.files.map { ($0.path, String(decoding: $0.contents, as: UTF8.self)) }

    static func files(hostRoot: String? = nil) -> [String: [UInt8]] {
        var result: [String: [UInt8]] = [:]
        for file in files {
            var text = file.contents
            if let hostRoot, file.path == "controllers/targets.yaml" {
                // Quoted: a folder named `sb #1` is a comment to a plain scalar, the target then `sb`.
                text = text.replacingOccurrences(of: "root: \(shippedRoot)", with: "root: \(YAML.doubleQuoted(hostRoot))")
            }
            result[file.path] = Array(text.utf8)
        }
        return result
    }
}
