@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkTestSupport
// `stat` is defined, to the compiler, by the module that first brought in <sys/stat.h>:
// CDispatch, imported here as the sources do (without it, a build failed now and then with
// "missing import of defining module 'CDispatch'" as files were added).
internal import CDispatch
import Foundation

/// The foundation issue's setup: a drifted host tree, `bulwark init --host-root`, and a bare
/// clone of the policy repository as origin.
struct Scenario {
    let dir: String
    var host: String { dir + "/host" }
    var policy: String { dir + "/policy" }
    var origin: String { dir + "/origin.git" }
    var state: String { dir + "/state" }

    init(in dir: String) throws {
        self.dir = dir
        try DemoHost.create(at: dir + "/host")
        let created = try bulwark("init", dir + "/policy", "--host-root", dir + "/host")
        guard created.status == 0 else { throw SupportError("init failed: \(created.stderr)") }
        try git("clone", "-q", "--bare", dir + "/policy", dir + "/origin.git")
    }

    /// Runs a command against origin with this scenario's state directory.
    func run(_ command: String, _ extra: String..., stateDir: String? = nil, environment: [String: String] = [:]) throws -> ProcessOutput {
        try BulwarkTestSupport.run(try bulwarkExecutable(), [command, "--repo", origin, "--state-dir", stateDir ?? state] + extra,
                                   environment: environment)
    }

    /// An environment whose git signs commits with `privateKey` (`gpg.format ssh`), as a person
    /// set up by the README's lines: a home folder of its own under the scenario.
    func signingEnvironment(_ privateKey: String) throws -> [String: String] {
        let home = dir + "/home-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        try write(home + "/.gitconfig", "[gpg]\n\tformat = ssh\n[user]\n\tsigningkey = \(privateKey)\n")
        return ["HOME": home]
    }

    /// Takes the origin's head as the last applied revision (`applied-revision` in the state
    /// directory), as an operator who reviewed it would: a first run at a revision with history
    /// and no applied record is judged against the branch's first revision.
    func acceptHead() throws {
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try write(Provenance.baselineFile(state), try git("--git-dir", origin, "rev-parse", "main"))
    }

    func auditCommits() throws -> [String] {
        let out = try git("--git-dir", origin, "log", "--format=%H", "bulwark/audit")
        return out.split(separator: "\n").map(String.init)
    }

    func trailers(_ key: String) throws -> [String] {
        try git("--git-dir", origin, "log", "--format=%(trailers:key=\(key),valueonly)", "bulwark/audit")
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
    }

    /// Replaces `old` with `new` in one of the policy's files and commits that, as a person would.
    func editPolicy(_ path: String, replacing old: String, with new: String, message: String = "policy change") throws {
        try commitPolicy(path, try read(policy + "/" + path).replacingOccurrences(of: old, with: new), message: message)
    }

    /// Commits a change to the policy through a clone, as a person would, and pushes it.
    func commitPolicy(_ path: String, _ text: String, message: String = "policy change") throws {
        let work = dir + "/work-\(UUID().uuidString.prefix(8))"
        try git("clone", "-q", origin, work)
        try write(work + "/" + path, text)
        try git("add", "-A", in: work)
        try git("commit", "-qm", message, in: work)
        try git("push", "-q", "origin", "main", in: work)
    }

    /// Every file under the host tree with its mode and content, to prove nothing changed.
    func snapshot() throws -> [String: String] {
        var result: [String: String] = [:]
        let walker = FileManager.default.enumerator(atPath: host)
        while let relative = walker?.nextObject() as? String {
            // FileManager's attributes (an lstat), not `stat()`: which module defines Glibc's
            // `stat` to this file depends on the other files of the target (a build failed with
            // "missing import of defining module 'CDispatch'" as files were added).
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: host + "/" + relative),
                  attributes[.type] as? FileAttributeType == .typeRegular,
                  let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue,
                  let group = (attributes[.groupOwnerAccountID] as? NSNumber)?.intValue else { continue }
            result[relative] = String(mode & 0o7777, radix: 8) + ":\(group):" + (try read(host + "/" + relative))
        }
        return result
    }
}

func bulwark(_ arguments: [String]) throws -> ProcessOutput {
    try run(try bulwarkExecutable(), arguments)
}
