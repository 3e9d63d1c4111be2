import Foundation

/// Where `installRealPrograms` put the dynamic loader and the libraries, as the target names them.
public struct InstalledPrograms: Sendable {
    /// The loader's real file: `/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2`.
    public var loader: String
    /// The name programs give the loader (their `PT_INTERP`): `/lib64/ld-linux-x86-64.so.2`, a link to `loader`.
    public var interpreter: String
    /// The libraries' folder: `/lib/x86_64-linux-gnu`.
    public var libraries: String
    /// Every library `ldd` listed, by its path in the target.
    public var libraryPaths: [String]
}

/// Copies this machine's `/bin/bash` to `root`'s `bin/bash` and its `/bin/sh` (dash on Debian)
/// to `bin/sh`, both regular files (0755), with the loader and the libraries they need where
/// `ldd` says this machine finds them: each library a copy (0644) under `root`, the loader's
/// file (0755) in the libraries' folder and its `PT_INTERP` name a link to it, as Debian lays
/// it out. `ldd` is read here only to know what to copy. A real `usr/bin/sudo` is not needed.
public func installRealPrograms(_ root: String) throws -> InstalledPrograms {
    let fm = FileManager.default
    var libraries: [String] = []
    var interpreter: String?
    for program in ["/bin/bash", "/bin/sh"] {
        let listed = try run("/usr/bin/ldd", [program])
        guard listed.status == 0 else { throw SupportError("ldd \(program): \(listed.stderr)") }
        for line in listed.stdout.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if let arrow = words.firstIndex(of: "=>"), arrow + 1 < words.count, words[arrow + 1].hasPrefix("/") {
                if !libraries.contains(words[arrow + 1]) { libraries.append(words[arrow + 1]) }
            } else if let first = words.first, first.hasPrefix("/") {
                interpreter = first
            }
        }
    }
    guard let interpreter, let folder = libraries.first.map({ ($0 as NSString).deletingLastPathComponent }) else {
        throw SupportError("ldd named no loader or library")
    }
    func copy(_ from: String, to: String, mode: Int) throws {
        let target = root + to
        try fm.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try? fm.removeItem(atPath: target)
        let real = (from as NSString).resolvingSymlinksInPath
        guard fm.createFile(atPath: target, contents: try Data(contentsOf: URL(fileURLWithPath: real)),
                            attributes: [.posixPermissions: mode]) else { throw SupportError("cannot copy \(real) to \(target)") }
        chmod(target, mode_t(mode))
    }
    try copy("/bin/bash", to: "/bin/bash", mode: 0o755)
    try copy("/bin/sh", to: "/bin/sh", mode: 0o755)
    for library in libraries { try copy(library, to: library, mode: 0o644) }
    let loader = folder + "/" + (interpreter as NSString).lastPathComponent
    try copy(interpreter, to: loader, mode: 0o755)
    if loader != interpreter {
        try fm.createDirectory(atPath: root + (interpreter as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try? fm.removeItem(atPath: root + interpreter)
        try fm.createSymbolicLink(atPath: root + interpreter, withDestinationPath: loader)
    }
    return InstalledPrograms(loader: loader, interpreter: interpreter, libraries: folder, libraryPaths: libraries)
}
