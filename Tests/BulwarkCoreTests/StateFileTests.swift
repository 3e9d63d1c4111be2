import BulwarkCore
import Foundation
import Testing

/// `StateFile.replace` on real files: the new content whole under the old name, owner-only,
/// and a temporary another user planted (a hard link to a file of theirs, or of the system's)
/// removed, never written through.
@Suite struct StateFileTests {
    func withTemporaryFolder(_ body: (String) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bulwark-statefile-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try body(dir)
    }

    func mode(_ path: String) throws -> Int { try (FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1 }
    func inode(_ path: String) throws -> Int { try (FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? Int) ?? -1 }

    @Test func aHardLinkPlantedAsTheTemporaryIsRemovedNotWrittenThrough() throws {
        try withTemporaryFolder { dir in
            let victim = dir + "/victim"
            try Data("the victim's own\n".utf8).write(to: URL(fileURLWithPath: victim))
            chmod(victim, 0o644)
            let path = dir + "/audit-trail.json"
            #expect(link(victim, path + ".tmp") == 0)
            try StateFile.replace(path, with: Array("new\n".utf8), durability: .synced)
            #expect(try String(contentsOfFile: victim, encoding: .utf8) == "the victim's own\n")
            #expect(try mode(victim) == 0o644)
            #expect(try String(contentsOfFile: path, encoding: .utf8) == "new\n")
            #expect(try inode(path) != inode(victim))
            #expect(try mode(path) == 0o600)
            #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
        }
    }

    /// The twin: an ordinary replace over an old file and a temporary a killed writer left.
    @Test func aReplaceTakesTheNewContentWholeAndLeavesNoTemporary() throws {
        try withTemporaryFolder { dir in
            let path = dir + "/webhook-replays"
            try Data("old\n".utf8).write(to: URL(fileURLWithPath: path))
            try Data("cut sh".utf8).write(to: URL(fileURLWithPath: path + ".tmp"))
            for durability in [StateFile.Durability.crash, .synced, .syncedWithFolder] {
                try StateFile.replace(path, with: Array("whole \(durability)\n".utf8), durability: durability)
                #expect(try String(contentsOfFile: path, encoding: .utf8) == "whole \(durability)\n")
                #expect(try mode(path) == 0o600)
                #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
            }
            // A folder that is gone: a typed failure naming the temporary and the step.
            #expect(throws: StateFile.Failure.self) { try StateFile.replace(dir + "/none/file", with: [1]) }
            do {
                try StateFile.replace(dir + "/none/file", with: [1])
            } catch let error as StateFile.Failure {
                #expect(error.step == "create" && error.path == dir + "/none/file.tmp", "\(error)")
            }
        }
    }
}
