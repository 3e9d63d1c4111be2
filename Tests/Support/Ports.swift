internal import Foundation

// A port chosen here and handed to a process started later can be taken by another test in
// between (the suite runs in parallel). A server that can bind port 0 does, and says which port
// it got (`reportedPort`).

/// Waits for the port that `process`, started on port 0, says it bound: the number after
/// `127.0.0.1:` on the first whole line of `output()` holding `marker` after it. Read every
/// 20 ms until it is there, the process exited (its output read once more), or `seconds` passed:
/// nil then.
func reportedPort(of process: Process, after marker: String, seconds: Double = 60, in output: () -> String) -> Int? {
    let deadline = Date().addingTimeInterval(seconds)
    while true {
        let running = process.isRunning
        // The last piece is a line still being written, or empty.
        for line in output().split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            guard let said = line.range(of: marker), let address = line[said.upperBound...].range(of: "127.0.0.1:"),
                  let port = Int(line[address.upperBound...].prefix(while: \.isNumber)) else { continue }
            return port
        }
        guard running, Date() < deadline else { return nil }
        Thread.sleep(forTimeInterval: 0.02)
    }
}
