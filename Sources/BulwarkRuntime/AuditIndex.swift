package import BulwarkGit
package import Foundation

/// The `Bulwark-Id`s of the commits on the local audit branch, as of one commit of it, kept in
/// the state directory (`audit-index`) so that asking whether a record exists does not walk the
/// whole branch in every process.
///
/// Invariant: `ids` are exactly the ids of the history of `head`, never more. The file is a
/// cache: whatever cannot be trusted (missing, unreadable, a count that does not match, a head
/// that is no longer on the branch) is rebuilt from git, so a wrong file costs one walk and
/// never makes Bulwark believe a record exists that is not on the branch.
///
/// Format (UTF-8, one field a line):
///
///     bulwark-audit-index 1 <head commit hex, or "none"> <number of ids>
///     <id>
///     …
package struct AuditIndex: Sendable, Equatable {
    /// The audit commit the ids are up to date with; nil for a branch that does not exist yet.
    package var head: ObjectID?
    package var ids: Set<String> = []

    /// What keeping the index up to date cost in this process, for tests and diagnostics.
    package struct Statistics: Sendable, Equatable {
        /// The index was read from its file (and was usable).
        package var loadedFromFile = false
        /// Full walks of the audit branch.
        package var rebuilds = 0
        /// Audit commits read from git (by rebuilds and incremental updates alike).
        package var commitsRead = 0
    }

    package static let fileName = "audit-index"
    private static let magic = "bulwark-audit-index 1"

    /// The file's bytes, or nil when an id cannot be written on one line (then the index is
    /// kept in memory only, and the next process rebuilds it).
    package func serialized() -> [UInt8]? {
        guard ids.allSatisfy({ !$0.isEmpty && !$0.contains(where: \.isNewline) && !$0.contains(" ") }) else { return nil }
        var text = "\(Self.magic) \(head?.hex ?? "none") \(ids.count)\n"
        text.reserveCapacity(text.utf8.count + ids.count * 32)
        for id in ids.sorted() {
            text += id
            text += "\n"
        }
        return Array(text.utf8)
    }

    /// Parses a file's bytes; nil for anything that is not exactly a well-formed index.
    package static func parse(_ bytes: [UInt8]) -> AuditIndex? {
        guard let text = String(validating: bytes, as: UTF8.self), text.hasSuffix("\n") else { return nil }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        lines.removeLast()  // after the final newline
        guard let header = lines.first else { return nil }
        let fields = header.split(separator: " ")
        guard fields.count == 4, "\(fields[0]) \(fields[1])" == magic, let count = Int(fields[3]),
              count == lines.count - 1 else { return nil }
        var index = AuditIndex()
        if fields[2] != "none" {
            guard let head = ObjectID(hex: String(fields[2])) else { return nil }
            index.head = head
        }
        for line in lines.dropFirst() {
            guard !line.isEmpty, !line.contains(" ") else { return nil }
            index.ids.insert(String(line))
        }
        guard index.ids.count == count else { return nil }
        return index
    }

    /// Reads the index in `directory`; nil when there is none or it is not well formed.
    package static func read(in directory: String) -> AuditIndex? {
        guard let data = FileManager.default.contents(atPath: directory + "/" + fileName) else { return nil }
        return parse(Array(data))
    }

    /// Replaces the index in `directory` atomically: a temporary file renamed over it. Not
    /// synced: after a crash the file is either the old or the new one, or fails to parse, and
    /// is then rebuilt from git.
    package func write(in directory: String) throws {
        let path = directory + "/" + Self.fileName
        guard let bytes = serialized() else {
            try? FileManager.default.removeItem(atPath: path)
            return
        }
        try StateFile.replace(path, with: bytes)
    }
}
