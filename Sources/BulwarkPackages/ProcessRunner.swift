internal import Foundation

/// Runs a program to completion with a time limit, its output kept bounded. (A local runner:
/// the project means to move one into a shared module; this one has only what apt needs.)
struct ProcessRunner: Sendable {
    struct Result: Sendable {
        var status: Int32
        /// Standard output and error together, in order, at most the last `keep` bytes.
        var output: String
        var timedOut: Bool
    }

    /// Bytes of output kept (the end, where apt and dpkg say what failed).
    static let keep = 64 << 10

    var environment: [String: String]

    /// Runs `executable` with `arguments`; never throws for a non-zero exit (the caller reads
    /// `status`), only when the program cannot be started.
    func run(_ executable: String, _ arguments: [String], timeout: Duration) async throws(PackagesError) -> Result {
        let folder = NSTemporaryDirectory() + "bulwark-apt-out-\(UUID().uuidString)"
        guard mkdir(folder, 0o700) == 0 else {
            throw PackagesError("cannot create a folder for its output: \(String(cString: strerror(errno)))", subject: executable)
        }
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let outPath = folder + "/output"
        guard FileManager.default.createFile(atPath: outPath, contents: nil, attributes: [.posixPermissions: 0o600]),
              let out = FileHandle(forWritingAtPath: outPath) else {
            throw PackagesError("cannot create its output file", subject: executable)
        }
        defer { try? out.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.standardOutput = out
        process.standardError = out
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw PackagesError("cannot start: \(error)", subject: executable)
        }
        // Monotonic: a wall clock stepped meanwhile neither kills it early nor lets it hang.
        let deadline = ContinuousClock.now + timeout
        var timedOut = false
        while process.isRunning {
            if ContinuousClock.now >= deadline {
                timedOut = true
                process.terminate()
                let grace = ContinuousClock.now + .seconds(5)
                while process.isRunning && ContinuousClock.now < grace { try? await Task.sleep(for: .milliseconds(20)) }
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                break
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        process.waitUntilExit()
        let bytes = (try? DpkgPaths.readTail(outPath, keep: Self.keep)) ?? []
        return Result(status: process.terminationStatus, output: String(decoding: bytes, as: UTF8.self), timedOut: timedOut)
    }
}

extension DpkgPaths {
    /// The last `keep` bytes of a file.
    static func readTail(_ path: String, keep: Int) throws -> [UInt8] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: size > UInt64(keep) ? size - UInt64(keep) : 0)
        return Array(try handle.readToEnd() ?? Data())
    }
}
