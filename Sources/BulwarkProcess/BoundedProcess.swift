internal import Foundation
#if canImport(Glibc)
internal import Glibc
#endif

/// Runs a helper program (sshd -t/-T, ssh-keygen, gpgv) so that it can neither hang Bulwark nor
/// fill its memory: output goes to files (no pipe to fill and block the child), the run has a
/// deadline on the monotonic clock (a stepped wall clock neither ends it early nor lets it hang),
/// a child still running at the deadline is sent SIGTERM and, if it is still there after `grace`,
/// SIGKILL; at most `maxOutput` bytes of each output are read back. The output files are made
/// 0600 with fresh names in `folder` and removed before returning.
public enum BoundedProcess {
    public struct Result: Sendable, Equatable {
        public var status: Int32
        /// Standard output, at most `maxOutput` bytes of it, as UTF-8 (invalid bytes replaced).
        public var output: String
        /// Standard error likewise, without surrounding white space.
        public var errors: String
        /// Whether either output was longer than `maxOutput` and was cut.
        public var truncated: Bool
    }

    /// Why a run gave no result.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public enum Reason: Sendable, Equatable {
            /// The output files could not be made in the folder.
            case cannotCreateOutput
            /// The program could not be started.
            case cannotStart(String)
            /// Still running at the deadline: it was terminated (and killed if it ignored that).
            case timedOut
        }

        public var executable: String
        public var folder: String
        public var timeout: Duration
        public var reason: Reason

        public var description: String {
            switch reason {
            case .cannotCreateOutput: "cannot create output files in \(folder)"
            case .cannotStart(let why): "cannot run \(executable): \(why)"
            case .timedOut: "\(executable) did not finish within \(timeout.components.seconds) s"
            }
        }
    }

    /// Runs `executable` with `arguments`, its standard input from the file `input` (else
    /// /dev/null), for at most `timeout`.
    public static func run(
        _ executable: String, _ arguments: [String], input: String? = nil, folder: String,
        timeout: Duration, grace: Duration = .seconds(2), maxOutput: Int = 1 << 20
    ) throws(Failure) -> Result {
        func failure(_ reason: Failure.Reason) -> Failure {
            Failure(executable: executable, folder: folder, timeout: timeout, reason: reason)
        }
        let token = UUID().uuidString
        let outPath = "\(folder)/.bulwark-run-\(token).out", errPath = "\(folder)/.bulwark-run-\(token).err"
        defer {
            unlink(outPath)
            unlink(errPath)
        }
        guard let out = create(outPath), let err = create(errPath) else { throw failure(.cannotCreateOutput) }
        let stdin = input.flatMap { FileHandle(forReadingAtPath: $0) }
        defer {
            try? out.close()
            try? err.close()
            try? stdin?.close()
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = out
        process.standardError = err
        process.standardInput = stdin ?? FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw failure(.cannotStart(error.localizedDescription))
        }
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                stop(process, grace: grace)
                throw failure(.timedOut)
            }
            usleep(2_000)
        }
        process.waitUntilExit()
        let (output, outputCut) = read(outPath, limit: maxOutput)
        let (errors, errorsCut) = read(errPath, limit: maxOutput)
        return Result(status: process.terminationStatus, output: output,
                      errors: errors.trimmingCharacters(in: .whitespacesAndNewlines), truncated: outputCut || errorsCut)
    }

    /// SIGTERM, then SIGKILL after `grace` if the child is still there; waits for it either way.
    static func stop(_ process: Process, grace: Duration) {
        process.terminate()
        let killAt = ContinuousClock.now + grace
        while process.isRunning, ContinuousClock.now < killAt { usleep(2_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// A new file (never an existing one or a link), 0600, open for writing.
    private static func create(_ path: String) -> FileHandle? {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return nil }
        return FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
    }

    /// At most `limit` bytes of the file, and whether there was more.
    private static func read(_ path: String, limit: Int) -> (String, Bool) {
        guard let handle = FileHandle(forReadingAtPath: path) else { return ("", false) }
        defer { try? handle.close() }
        let bytes = (try? handle.read(upToCount: limit + 1)) ?? nil ?? Data()
        return (String(decoding: bytes.prefix(limit), as: UTF8.self), bytes.count > limit)
    }
}
