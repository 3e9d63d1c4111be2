internal import Foundation

/// Runs `nft`, in a network namespace when the target names one (`ip netns exec NAME nft ...`).
struct NFT: Sendable {
    var namespace: String?
    var executable = "/usr/sbin/nft"

    struct Failure: Error, CustomStringConvertible {
        var program = "nft"
        var arguments: [String]
        var status: Int32
        var message: String
        var description: String { "\(program) \(arguments.joined(separator: " ")) failed (\(status)): \(message)" }
    }

    @discardableResult
    func run(_ arguments: [String]) throws -> Data {
        try Self.run(executable, arguments, namespace: namespace)
    }

    /// Runs a program to completion, inside `namespace` when one is named; throws on a non-zero exit.
    static func run(_ executable: String, _ arguments: [String], namespace: String?) throws -> Data {
        let process = Process()
        if let namespace {
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            process.arguments = ["netns", "exec", namespace, executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(program: (executable as NSString).lastPathComponent, arguments: arguments, status: process.terminationStatus,
                          message: String(decoding: message, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return data
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
