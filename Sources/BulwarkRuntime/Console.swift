package import BulwarkCore
package import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Terminal output: colour only on a terminal and without NO_COLOR.
///
/// Writes go straight to the file descriptors. A stream whose reader has gone (`bulwark apply |
/// head` after `head` exits: EPIPE, with SIGPIPE ignored at startup) is closed quietly: nothing
/// more is printed to it, the command finishes its work, and its exit code still says how it went.
package struct Console: Sendable {
    package enum Stream: Sendable { case standardOutput, standardError }

    package let colour: Bool

    package init() {
        colour = isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
            && ProcessInfo.processInfo.environment["TERM"] != "dumb"
    }

    /// Streams found closed (bit 0 standard output, bit 1 standard error), for the whole process.
    private static let closed = Atomic<UInt8>(0)

    /// Ignores SIGPIPE, so that a write to a pipe nobody reads fails with EPIPE instead of
    /// killing the process. Called once at startup.
    package static func ignoreBrokenPipes() {
        signal(SIGPIPE, SIG_IGN)
    }

    /// Whether a stream's reader has gone.
    package static func isClosed(_ stream: Stream) -> Bool {
        closed.load(ordering: .relaxed) & bit(stream) != 0
    }

    private static func bit(_ stream: Stream) -> UInt8 { stream == .standardOutput ? 1 : 2 }

    /// Prints a line. What came from outside (a finding, a target's file, the audit branch) can
    /// hold escape sequences and bidirectional controls: they are shown as JSON escapes
    /// (`TerminalText.printable`), never sent to the terminal; only `paint`'s marks become colours.
    package func print(_ text: String, to stream: Stream = .standardOutput) {
        Self.write(Array((TerminalText.printable(text, colour: colour) + "\n").utf8), to: stream)
    }

    /// Lines printed as `print` prints each, written 64 KiB at a time: a drifted 100-root plan
    /// printed 4,800 lines with a system call each. `flush()` writes the rest.
    package struct Buffered {
        let console: Console
        let stream: Stream
        private var bytes: [UInt8] = []
        static let size = 64 << 10

        init(_ console: Console, stream: Stream) {
            self.console = console
            self.stream = stream
            bytes.reserveCapacity(Self.size)
        }

        package mutating func print(_ text: String) {
            bytes += TerminalText.printable(text, colour: console.colour).utf8
            bytes.append(UInt8(ascii: "\n"))
            if bytes.count >= Self.size { flush() }
        }

        package mutating func flush() {
            Console.write(bytes, to: stream)
            bytes.removeAll(keepingCapacity: true)
        }
    }

    package func buffered(_ stream: Stream = .standardOutput) -> Buffered { Buffered(self, stream: stream) }

    /// Writes every byte, retrying short writes and EINTR; on any other failure (EPIPE first of
    /// all) the stream is marked closed and later writes to it are skipped.
    package static func write(_ bytes: [UInt8], to stream: Stream) {
        guard !isClosed(stream) else { return }
        let fd = stream == .standardOutput ? STDOUT_FILENO : STDERR_FILENO
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { buffer in
                Glibc.write(fd, buffer.baseAddress.map { $0 + offset }, bytes.count - offset)
            }
            if written > 0 {
                offset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                closed.bitwiseOr(bit(stream), ordering: .relaxed)
                return
            }
        }
    }

    /// Warnings and errors pass through `Redaction.urls`: a URL in a message never shows its credentials.
    package func warn(_ text: String) { print(paint("warning:", .yellow) + " " + Redaction.urls(in: text), to: .standardError) }
    /// `Error:`, as argument-parser and `Bulwark.fail` begin the message a failed command ends
    /// with: one prefix for every error a command prints.
    package func error(_ text: String) { print(paint(Self.errorPrefix, .red) + " " + Redaction.urls(in: text), to: .standardError) }
    package static let errorPrefix = "Error:"

    /// A revision's warnings, at most `ValidationFailure.maxShown` of them, then how many more.
    package func warn(_ warnings: [ManifestError]) {
        for warning in warnings.prefix(ValidationFailure.maxShown) { warn(warning.description) }
        if warnings.count > ValidationFailure.maxShown {
            warn("… and \(warnings.count - ValidationFailure.maxShown) more warnings")
        }
    }

    package enum Colour: String { case red = "31", green = "32", yellow = "33", blue = "34", dim = "2", bold = "1" }

    /// `text` in `colour` when colour is on: marked (`TerminalText.painted`), and made an
    /// escape sequence only by `print`, after everything else in the line has been escaped.
    package func paint(_ text: String, _ colour: Colour) -> String {
        self.colour ? TerminalText.painted(text, code: colour.rawValue) : text
    }

    /// The JSON outputs' conventions: every document carries `schemaVersion` (see
    /// `JSONSchema.version`), times are RFC 3339 strings (UTC, fractional seconds) and
    /// durations are numbers of seconds in fields named `…Seconds`.
    package func json(_ value: some Encodable) {
        if let data = try? Self.jsonEncoder().encode(value) { print(String(decoding: data, as: UTF8.self)) }
    }

    /// The encoder of every JSON document Bulwark prints or writes (`plan --out` too).
    package static func jsonEncoder() -> JSONEncoder { JSONOutput.encoder() }
}

/// The version of the JSON documents `--output json` prints; raised when a field changes meaning
/// or goes away (adding a field does not raise it). 2: one vocabulary across commands
/// (`DecisionJSON`: `observed`, `desired`, `verified`, `decision`, `result`, `revision`), where
/// `apply` and the status API showed the audit record's own fields (`observedBefore`,
/// `observedAfter`, `desiredCommit`, `approver`, a `commits` map) and `log` its raw trailers.
package enum JSONSchema {
    package static let version = 2
}
