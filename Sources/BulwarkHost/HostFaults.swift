internal import Foundation
internal import Glibc
internal import BulwarkCore

/// Faults the crash tests inject into a real `bulwark` process's host fixes. Off unless the
/// environment names one; nothing here changes what a normal run does.
enum HostFaults {
    /// `BULWARK_FAULT_KILL_IN_SSHD_FIX=checked`: SIGKILL the process once `sshd -t` accepted a
    /// candidate, before any file is renamed into place (a kill while a fix is still checked);
    /// `=written`: once the files are renamed into place, before the fix is verified.
    static let killInSSHDFix = ProcessInfo.processInfo.environment["BULWARK_FAULT_KILL_IN_SSHD_FIX"]

    static func sshdFix(at point: String) {
        if killInSSHDFix == point { kill(getpid(), SIGKILL) }
    }

    /// `BULWARK_FAULT_KILL_AT_CHANGE=KIND:before`: SIGKILL the process when a fix of `KIND`
    /// (`Sysctl`, `LoginDefs`, `FileMode`, `UserAccount`) is about to make its first change, its
    /// checks done, right before it passes the change gate (`HostChange.announce`);
    /// `=KIND:after`: once such a fix made its changes, before it is verified; `=FileMode:chowned`:
    /// once a FileMode fix changed the owner or group of a file whose set-id bits or capabilities
    /// the kernel took with it, before they are put back (`Kept`).
    static let killAtChange = ProcessInfo.processInfo.environment["BULWARK_FAULT_KILL_AT_CHANGE"]

    /// The kind whose fix runs here (set by its driver, carried onto the fix's thread by
    /// `HostRoot.applying`): what `killAtChange` is matched against.
    @TaskLocal static var fixing: String?

    static func change(at point: String, of kind: String? = fixing) {
        guard let killAtChange, let kind, killAtChange == "\(kind):\(point)" else { return }
        kill(getpid(), SIGKILL)
    }
}

/// A host fix's first change, announced.
enum HostChange {
    /// Passes the step's change gate (`ChangeGate.current`; nothing when the step has none):
    /// called right before each change a host fix makes (a rename into place, a write to
    /// `/proc/sys`, a folder made, a `chown` or `chmod`), after everything that may still refuse
    /// it. The first call writes the step's `tried` line; later ones return at once.
    static func announce() throws(ChangeGate.Closed) {
        if ChangeGate.current?.passed != true { HostFaults.change(at: "before") }
        try ChangeGate.passCurrent()
    }

    /// `announce`, its failure as a `HostError` about `path`: no change is made.
    static func announce(path: String) throws(HostError) {
        do {
            try announce()
        } catch {
            throw HostError("\(error)", path: path)
        }
    }
}
