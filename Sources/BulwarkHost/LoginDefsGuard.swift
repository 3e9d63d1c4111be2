internal import Foundation
internal import BulwarkCore

// MARK: - LoginDefs

extension LoginDefsDriver {
    /// Keys whose value is a program shadow-utils runs as root: `userdel` runs `USERDEL_CMD`
    /// (with the account's name) for every account it removes.
    static let programKeys: [String: String] = [
        "USERDEL_CMD": "userdel runs as root for every account it removes",
    ]

    /// Keys whose value is the `PATH` a login or `su` gives: root's (`ENV_SUPATH`, and
    /// `ENV_ROOTPATH` that util-linux's login reads first), every other user's (`ENV_PATH`).
    /// shadow-utils takes a value with `=` in it as a whole variable (`NAME=value`), and any
    /// other as the value of `PATH`.
    static let pathKeys: [String: String] = [
        "ENV_SUPATH": "the PATH su gives root", "ENV_ROOTPATH": "the PATH login gives root",
        "ENV_PATH": "the PATH login and su give every other user",
    ]

    /// Blocks what would run someone else's program as root: a `USERDEL_CMD` that is not a
    /// root-owned executable in folders only root can write (`SysctlDriver.untrustedProgram`,
    /// the kernel's helpers' rule), and a PATH key that sets another variable than `PATH`
    /// (`ENV_SUPATH LD_PRELOAD=/tmp/x.so`), or that names an empty or relative entry (the
    /// folder the command is run in) or a folder someone other than root can write (`/tmp`:
    /// whoever writes it chooses what root runs as `ls`). A folder that does not exist is fine
    /// where only root can make it.
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        judging("login.defs") { try Self.verdict(changes, root: try HostRoot(target: target)) }
    }

    static func verdict(_ changes: [PropertyDrift], root: HostRoot) throws -> GuardVerdict {
        for change in changes {
            let key = change.property, value = change.desired
            if let who = programKeys[key], let problem = try SysctlDriver.untrustedProgram(value, root: root) {
                return .block("\(key) \(quotedForMessage(value, limit: 200)) names a program \(who): \(problem)")
            }
            if let what = pathKeys[key], let problem = try searchPathProblem(value, root: root) {
                return .block("\(key) \(quotedForMessage(value, limit: 200)) is \(what): \(problem)")
            }
        }
        return .allow
    }

    /// Why the PATH `value` (`PATH=/usr/sbin:/usr/bin`, or the folders alone) would let someone
    /// other than root choose what the user runs, or nil.
    static func searchPathProblem(_ value: String, root: HostRoot) throws -> String? {
        var folders = Substring(value)
        if let equals = value.firstIndex(of: "=") {
            guard value[..<equals] == "PATH" else {
                return "it sets the variable \(quotedForMessage(value[..<equals])), not PATH (shadow-utils sets whatever precedes the =)"
            }
            folders = value[value.index(after: equals)...]
        }
        for folder in folders.split(separator: ":", omittingEmptySubsequences: false) {
            guard PathText.isAbsolute(folder) else {
                return folder.isEmpty ? "an empty entry is the folder the command is run in"
                    : "\(quotedForMessage(folder)) is relative to the folder the command is run in"
            }
            if let problem = try SysctlDriver.rootsAlone(String(folder), root: root, mayBeMissing: true) { return problem }
        }
        return nil
    }
}
