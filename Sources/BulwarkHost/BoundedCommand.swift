internal import Foundation

/// Runs an operator's command (a `ConfigFile`'s validation or reload) with a time limit: killed
/// when it runs longer, its output kept to a bounded tail read from a private file (never a pipe
/// a grandchild could hold open), and anything in it that looks like a key redacted before it
/// reaches a message or a record.
struct BoundedCommand: Sendable {
    var arguments: [String]
    var timeout: Duration

    static let outputLimit = 600

    struct Outcome: Sendable {
        var status: Int32
        var timedOut: Bool
        var output: String
    }

    /// Runs the command with `{file}` in any argument replaced by `file`.
    func run(file: String? = nil) throws -> Outcome {
        guard let executable = arguments.first else { throw HostError("empty command") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments.dropFirst().map { argument in
            file.map { argument.replacingOccurrences(of: "{file}", with: $0) } ?? argument
        }
        var template = Array((NSTemporaryDirectory() + "/bulwark-command-XXXXXX").utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw HostError("cannot create a file for the command's output: \(errnoText())") }
        let outputPath = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        unlink(outputPath)
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw HostError("cannot run \(executable): \(error)")
        }
        let deadline = ContinuousClock.now + timeout
        var timedOut = false
        while process.isRunning {
            if ContinuousClock.now >= deadline {
                timedOut = true
                kill(process.processIdentifier, SIGKILL)
                break
            }
            usleep(20_000)
        }
        process.waitUntilExit()
        let size = lseek(fd, 0, SEEK_END)
        let start = max(0, Int(size) - 4096)
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = pread(fd, &buffer, buffer.count, off_t(start))
        let tail = String(decoding: buffer[0..<max(0, count)], as: UTF8.self)
        return Outcome(status: process.terminationStatus, timedOut: timedOut, output: Self.redacted(tail, file: file))
    }

    /// One bounded line: the candidate's path shown as `<candidate>`, and every word that could be
    /// a key (16 or more characters mixing letters and digits, or starting `sk-`) redacted.
    static func redacted(_ text: String, file: String?) -> String {
        var text = text
        if let file { text = text.replacingOccurrences(of: file, with: "<candidate>") }
        let words = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "'" || $0 == "\"" })
        var result = ""
        var index = text.startIndex
        for word in words {
            result += text[index..<word.startIndex]
            let letters = word.contains(where: \.isLetter)
            let digits = word.contains(where: \.isNumber)
            if word.hasPrefix("sk-") || (word.count >= 16 && letters && digits && !word.contains("/")) {
                result += "<redacted>"
            } else {
                result += word
            }
            index = word.endIndex
        }
        result += text[index...]
        let line = HostError.oneLine(result.trimmingCharacters(in: .whitespacesAndNewlines), limit: outputLimit)
        return line
    }
}
