internal import BulwarkProcess
internal import Foundation

/// Runs `nft`, in a network namespace when the target names one (`ip netns exec NAME nft ...`).
struct NFT: Sendable {
    var namespace: String?
    var executable = "/usr/sbin/nft"
    /// A path to a namespace already opened and checked (`/proc/PID/fd/N`): entered with
    /// `nsenter --net=`, in place of `namespace`'s name, which may be bound elsewhere by now.
    var entered: String?

    struct Failure: Error, CustomStringConvertible {
        var program = "nft"
        var arguments: [String]
        var status: Int32
        var message: String
        var description: String { "\(program) \(arguments.joined(separator: " ")) failed (\(status)): \(message)" }
    }

    @discardableResult
    func run(_ arguments: [String]) throws -> Data {
        guard let entered else { return try Self.run(executable, arguments, namespace: namespace) }
        return try Self.run(executable, arguments, namespace: nil, entering: entered)
    }

    /// How long one `nft` (or `ip`) run may take before its process group is killed.
    static let timeout = Duration.seconds(60)
    /// The most output read back (a large ruleset listed as JSON); more is an error, not a cut document.
    static let maxOutput = 16 << 20

    /// Runs a program to completion, inside `namespace` when one is named; throws on a non-zero
    /// exit, a deadline passed or an output too long. Through the one bounded runner
    /// (`BoundedProcess`): its own process group, killed at the deadline and by the daemon's
    /// shutdown watchdog, none of Bulwark's credentials in its environment.
    static func run(_ executable: String, _ arguments: [String], namespace: String?, entering: String? = nil) throws -> Data {
        var argv = namespace.map { ["netns", "exec", $0, executable] + arguments } ?? arguments
        var program = namespace == nil ? executable : "/usr/sbin/ip"
        if let entering {
            argv = ["--net=" + entering, executable] + arguments
            program = "/usr/bin/nsenter"
        }
        let result: BoundedProcess.Result
        do {
            result = try BoundedProcess.run(program, argv, folder: NSTemporaryDirectory(), timeout: timeout, maxOutput: maxOutput)
        } catch {
            throw Failure(program: (executable as NSString).lastPathComponent, arguments: arguments, status: -1, message: error.description)
        }
        guard result.status == 0 else {
            throw Failure(program: (executable as NSString).lastPathComponent, arguments: arguments, status: result.status,
                          message: result.errors)
        }
        guard !result.truncated else {
            throw Failure(program: (executable as NSString).lastPathComponent, arguments: arguments, status: result.status,
                          message: "its output is longer than \(maxOutput) bytes")
        }
        return Data(result.output.utf8)
    }

    /// Checks, then applies, a ruleset file as one transaction.
    func apply(_ ruleset: String) throws {
        let path = NSTemporaryDirectory() + "/bulwark-nft-\(UUID().uuidString).nft"
        guard FileManager.default.createFile(atPath: path, contents: Data(ruleset.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw Failure(arguments: ["-f", path], status: -1, message: "cannot write the candidate ruleset")
        }
        defer { try? FileManager.default.removeItem(atPath: path) }
        try run(["-c", "-f", path])
        try run(["-f", path])
    }
}
