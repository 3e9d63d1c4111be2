internal import Foundation
internal import Glibc

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
}
