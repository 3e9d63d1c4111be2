internal import Foundation

/// A folder made for one test and removed after it.
public func withTemporaryDirectory<R>(_ body: (String) async throws -> R) async throws -> R {
    var template = Array((NSTemporaryDirectory() + "/bulwark-test-XXXXXX").utf8CString)
    guard mkdtemp(&template) != nil else { throw SupportError("mkdtemp failed") }
    let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

public struct SupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// What a process printed and how it ended.
public struct ProcessOutput: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs a program to completion (no shell), with a clean git environment.
@discardableResult
public func run(_ executable: String, _ arguments: [String], in directory: String? = nil,
                environment extra: [String: String] = [:]) throws -> ProcessOutput {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    var env = ProcessInfo.processInfo.environment
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_AUTHOR_NAME"] = "Test Person"
    env["GIT_AUTHOR_EMAIL"] = "person@example.org"
    env["GIT_COMMITTER_NAME"] = "Test Person"
    env["GIT_COMMITTER_EMAIL"] = "person@example.org"
    env["NO_COLOR"] = "1"
    for (key, value) in extra { env[key] = value }
    process.environment = env
    let out = Pipe()
    // stderr goes to a file so a chatty child can never block on a full pipe.
    let errPath = NSTemporaryDirectory() + "/bulwark-test-stderr-\(UUID().uuidString)"
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: errPath) }
    let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    try err.close()
    let errData = FileManager.default.contents(atPath: errPath) ?? Data()
    return ProcessOutput(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

/// The `git` CLI, as an independent reader and writer of the repositories Bulwark touches.
@discardableResult
public func git(_ arguments: String..., in directory: String? = nil) throws -> String {
    try git(arguments, in: directory)
}

/// `git(_:in:)` with the arguments as an array.
@discardableResult
public func git(_ arguments: [String], in directory: String? = nil) throws -> String {
    let result = try run("/usr/bin/git", arguments, in: directory)
    guard result.status == 0 else {
        throw SupportError("git \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.stderr)")
    }
    return result.stdout
}

/// Writes a file, creating its folders.
public func write(_ path: String, _ text: String, mode: Int = 0o644) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                            withIntermediateDirectories: true)
    guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: mode]) else {
        throw SupportError("cannot write \(path)")
    }
}

public func read(_ path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else { throw SupportError("cannot read \(path)") }
    return String(decoding: data, as: UTF8.self)
}

/// The built `bulwark` executable: `$BULWARK_BIN`, or next to the test bundle.
public func bulwarkExecutable() throws -> String {
    if let path = ProcessInfo.processInfo.environment["BULWARK_BIN"], FileManager.default.isExecutableFile(atPath: path) {
        return path
    }
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = directory.appendingPathComponent("bulwark").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        directory = directory.deletingLastPathComponent()
    }
    throw SupportError("bulwark binary not found: run `swift build` first or set BULWARK_BIN")
}

/// Runs the `bulwark` binary.
@discardableResult
public func bulwark(_ arguments: String...) throws -> ProcessOutput {
    try run(try bulwarkExecutable(), arguments)
}

public var isRoot: Bool { geteuid() == 0 }
