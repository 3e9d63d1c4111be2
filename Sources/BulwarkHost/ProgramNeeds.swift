internal import Foundation
internal import CLinux
internal import BulwarkCore

/// What the kernel and the dynamic loader read of an ELF file to start it: its class and
/// machine, its interpreter (`PT_INTERP`), and from its dynamic section (`PT_DYNAMIC`) the
/// libraries it needs (`DT_NEEDED`) and where to look for them first (`DT_RPATH`,
/// `DT_RUNPATH`). Little-endian ELF64 and ELF32 only; anything else, a script among them,
/// gives nil.
///
/// Read defensively, for a file anyone may have put there: every read bounded by the file's
/// size and checked arithmetic, the headers, dynamic entries, names and name lengths capped
/// (`maxHeaders`, `maxDynamic`, `maxNeeded`, `maxString`). A damaged or truncated file gives
/// nil, or what could be read of it before the damage; it never traps nor loops.
struct ELFHeaders: Sendable, Equatable {
    var wide: Bool
    var machine: UInt16
    var interpreter: String?
    var needed: [String] = []
    var rpath: [String] = []
    var runpath: [String] = []

    static let maxHeaders = 256
    static let maxDynamic = 4096
    static let maxNeeded = 256
    static let maxString = 4096

    /// What the start of the file at `path` (a real path under `root`) holds, read through the
    /// root's walk (links followed only inside it, none at the end): its first `count` bytes
    /// (fewer for a shorter file), `notRegular` (a folder, a device, a FIFO), `missing`, or
    /// `unreadable`.
    enum Start: Equatable {
        case bytes([UInt8])
        case notRegular
        case missing
        case unreadable
    }

    static func start(of path: String, in root: HostRoot, count: Int) -> Start {
        guard let walk = try? root.walk(root.components(of: path)) else { return .unreadable }
        guard walk.exists, let name = walk.name else { return .missing }
        let fd = openat(walk.folder.fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { return errno == ENOENT ? .missing : .unreadable }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .unreadable }
        guard info.st_mode & FileType.mask == FileType.regular else { return .notRegular }
        var bytes = [UInt8](repeating: 0, count: count)
        let read = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, 0) }
        guard read >= 0 else { return .unreadable }
        return .bytes(Array(bytes.prefix(read)))
    }

    /// Whether the file at `path` could be an ELF object a program loads: a regular file that
    /// begins with ELF's magic number, or one that cannot be read to tell (judged as if it
    /// were). A folder, a device or a text file is not.
    static func couldBeObject(_ path: String, in root: HostRoot) -> Bool {
        switch start(of: path, in: root, count: 4) {
        case .bytes(let magic): magic == [0x7f, 0x45, 0x4c, 0x46]
        case .unreadable: true
        case .notRegular, .missing: false
        }
    }

    /// Whether the regular file at `path` begins with `#!`: a script the kernel hands to its
    /// interpreter, which then reads it with the caller's rights.
    static func isScript(_ path: String, in root: HostRoot) -> Bool {
        start(of: path, in: root, count: 2) == .bytes([0x23, 0x21])
    }

    /// The interpreter a script at `path` names on its `#!` line (`/usr/bin/python3` of
    /// `#!/usr/bin/python3 -I`), which the kernel starts with the caller's rights; nil for a file
    /// that is no script or names no absolute path. Read through the root's walk, as `start`.
    static func scriptInterpreter(_ path: String, in root: HostRoot) -> String? {
        guard case .bytes(let bytes) = start(of: path, in: root, count: 256), bytes.starts(with: [0x23, 0x21]) else { return nil }
        let line = bytes.dropFirst(2).prefix { $0 != 0x0a }
        let word = line.drop { $0 == 0x20 || $0 == 0x09 }.prefix { $0 != 0x20 && $0 != 0x09 && $0 != 0x0d && $0 != 0 }
        guard let text = String(validating: word, as: UTF8.self), PathText.isAbsolute(text) else { return nil }
        return text
    }

    /// Reads the regular file open at `fd`, `size` bytes long.
    init?(fd: Int32, size: Int) {
        guard size > 0 else { return nil }
        let file = Reader(fd: fd, size: UInt64(size))
        guard let ident = file.bytes(0, 16), ident[0] == 0x7f, ident[1] == 0x45, ident[2] == 0x4c, ident[3] == 0x46,
              ident[4] == 1 || ident[4] == 2, ident[5] == 1 else { return nil }
        let wide = ident[4] == 2
        self.wide = wide
        guard let header = file.bytes(0, wide ? 64 : 52), let type = header.int(16, 2), type == 2 || type == 3,
              let machine = header.int(18, 2) else { return nil }
        self.machine = UInt16(machine)
        let word = wide ? 8 : 4
        guard let tableOffset = header.int(wide ? 32 : 28, word), let entrySize = header.int(wide ? 54 : 42, 2),
              let count = header.int(wide ? 56 : 44, 2) else { return nil }
        guard count > 0 else { return }
        guard entrySize == (wide ? 56 : 32), count <= UInt64(Self.maxHeaders),
              let table = file.bytes(tableOffset, Int(count) * Int(entrySize)) else { return nil }
        // (type, offset, address, size in the file) of each program header.
        var segments: [(type: UInt64, offset: UInt64, address: UInt64, size: UInt64)] = []
        for index in 0..<Int(count) {
            let at = index * Int(entrySize)
            guard let type = table.int(at, 4), let offset = table.int(at + (wide ? 8 : 4), word),
                  let address = table.int(at + (wide ? 16 : 8), word), let size = table.int(at + (wide ? 32 : 16), word) else { return nil }
            segments.append((type, offset, address, size))
        }
        if let interp = segments.first(where: { $0.type == 3 }) {
            guard interp.size <= UInt64(Self.maxString), let bytes = file.bytes(interp.offset, Int(interp.size)),
                  let text = Self.text(bytes[...]) else { return nil }
            interpreter = text
        }
        guard let dynamic = segments.first(where: { $0.type == 2 }) else { return }
        let entry = UInt64(2 * word)
        let entries = min(dynamic.size / entry, UInt64(Self.maxDynamic))
        guard entries > 0, let table = file.bytes(dynamic.offset, Int(entries * entry)) else { return }
        var needed: [UInt64] = []
        var strtab: UInt64?, strsz: UInt64?, rpath: UInt64?, runpath: UInt64?
        for index in 0..<Int(entries) {
            let at = index * Int(entry)
            guard let tag = table.int(at, word), let value = table.int(at + word, word) else { break }
            switch tag {
            case 0: break
            case 1: if needed.count < Self.maxNeeded { needed.append(value) }
            case 5: strtab = value
            case 10: strsz = value
            case 15: rpath = value
            case 29: runpath = value
            default: continue
            }
            if tag == 0 { break }
        }
        // The string table is named by its address once loaded: found in the file through the
        // loaded segment that holds it, as the loader maps it.
        guard let strtab, let load = segments.first(where: { segment in
            segment.type == 1 && strtab >= segment.address && strtab - segment.address < segment.size
        }) else { return }
        let (start, overflow) = load.offset.addingReportingOverflow(strtab - load.address)
        guard !overflow else { return }
        func string(_ offset: UInt64) -> String? {
            if let strsz, offset >= strsz { return nil }
            let (at, overflow) = start.addingReportingOverflow(offset)
            guard !overflow, at < file.size else { return nil }
            var length = min(UInt64(Self.maxString), file.size - at)
            if let strsz { length = min(length, strsz - offset) }
            guard let bytes = file.bytes(at, Int(length)), let end = bytes.firstIndex(of: 0) else { return nil }
            return Self.text(bytes[..<end])
        }
        self.needed = needed.compactMap(string)
        self.rpath = rpath.flatMap(string).map(Self.folders) ?? []
        self.runpath = runpath.flatMap(string).map(Self.folders) ?? []
    }

    /// Text up to its first NUL, when it is UTF-8 and not empty.
    private static func text(_ bytes: ArraySlice<UInt8>) -> String? {
        let end = bytes.firstIndex(of: 0) ?? bytes.endIndex
        guard end > bytes.startIndex, let text = String(validating: bytes[..<end], as: UTF8.self) else { return nil }
        return text
    }

    /// A search path's folders (`DT_RPATH`, `DT_RUNPATH`: separated by colons).
    private static func folders(_ text: String) -> [String] {
        text.split(separator: ":").prefix(64).map(String.init)
    }

    /// Bounded reads of an open file.
    private struct Reader {
        let fd: Int32
        let size: UInt64

        /// `count` bytes at `offset`, or nil when any of them lies past the end or cannot be read.
        func bytes(_ offset: UInt64, _ count: Int) -> [UInt8]? {
            guard count > 0, count <= 1 << 20 else { return nil }
            let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
            guard !overflow, end <= size, end <= UInt64(Int64.max) else { return nil }
            var buffer = [UInt8](repeating: 0, count: count)
            var done = 0
            while done < count {
                let n = buffer.withUnsafeMutableBytes { raw in
                    pread(fd, raw.baseAddress! + done, count - done, off_t(offset) + off_t(done))
                }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return nil }
                done += n
            }
            return buffer
        }
    }
}

private extension Array where Element == UInt8 {
    /// The little-endian unsigned number of `width` bytes at `at`, or nil past the end.
    func int(_ at: Int, _ width: Int) -> UInt64? {
        guard at >= 0, width > 0, width <= 8, at <= count - width else { return nil }
        var value: UInt64 = 0
        for index in (at..<at + width).reversed() { value = value << 8 | UInt64(self[index]) }
        return value
    }
}

/// A file or folder a program needs, and for what, to start: its interpreter executable (the
/// kernel opens it with the caller's rights), each library it and they need readable (the
/// loader opens them with the rights the program runs with), and every folder on the way to
/// each searchable.
struct ProgramNeed: Sendable {
    /// The real path under the root (as `HostRoot.resolve` gives it).
    var path: String
    /// As the host names it: `/lib/x86_64-linux-gnu/libc.so.6`.
    var shown: String
    /// 0o1 (execute) for the interpreter, 0o4 (read) for a library.
    var want: UInt32
    /// Every real folder on the way to it: those of the name the program gives, and those of
    /// where the links on it lead.
    var folders: Set<String>
    /// Opened once the program runs as root (the libraries of a program setuid root): any
    /// account can, and only the interpreter is judged by the caller's rights.
    var asRoot: Bool
}

/// What each program needs to start (`ProgramNeed`), worked out from its ELF headers and those of
/// the libraries it needs, as the root's loader would find them: links followed only inside
/// the root (`HostRoot.walk`); a library looked for in its object's `DT_RPATH` (without a
/// `DT_RUNPATH`) and the program's, its `DT_RUNPATH` (`$ORIGIN` its object's folder), the
/// folders `etc/ld.so.conf` lists (and its `include`s), the interpreter's folder, then
/// `lib/<multiarch>`, `usr/lib/<multiarch>`, `lib64`, `usr/lib64`, `lib`, `usr/lib`; the first
/// ELF file of the program's class and machine is taken. At most `maxObjects` files are read.
/// A program that is no ELF file (a script) needs nothing here.
///
/// Within a plan (outside the target's lock), kept per root and program for the plan's life: a
/// plan of many roots asks again for each FileMode resource that could take something away.
enum ProgramNeeds {
    static let maxObjects = 128
    static let maxConfFiles = 64
    static let maxFolders = 256

    final class PlanAnswers: Sendable {
        let needs = Memo<String, [ProgramNeed]>(limit: PlanReads.pathLimit)
        let folders = Memo<String, [String]>(limit: PlanReads.rootLimit)
    }

    private static func answers(_ root: HostRoot) -> PlanAnswers? {
        guard !HostLock.isHeld(root) else { return nil }
        return ObservationScope.current?.slot { PlanAnswers() }
    }

    /// What the program at `program` (a real path under the root) needs to start.
    static func of(_ program: String, in root: HostRoot) -> [ProgramNeed] {
        guard let answers = answers(root) else { return needs(program, in: root) }
        return answers.needs.value(root.path + "\u{0}" + program) { needs(program, in: root) }
    }

    /// The multiarch tuple Debian's folders are named after, by ELF machine and class.
    static func multiarch(_ machine: UInt16, wide: Bool) -> String? {
        switch machine {
        case 62: "x86_64-linux-gnu"
        case 3: "i386-linux-gnu"
        case 183: "aarch64-linux-gnu"
        case 40: "arm-linux-gnueabihf"
        case 243: wide ? "riscv64-linux-gnu" : nil
        case 21: "powerpc64le-linux-gnu"
        case 22: "s390x-linux-gnu"
        case 258: "loongarch64-linux-gnu"
        default: nil
        }
    }

    /// An open ELF file under the root: its headers, real path and what `fstat` said of it (the
    /// file read, not its path looked at again). Nil when it is missing, not a regular file,
    /// reached through a link the walk does not follow, or not ELF.
    private static func openELF(_ path: String, in root: HostRoot) -> (ELFHeaders, real: String, info: stat)? {
        guard let walk = try? root.walk(root.components(of: path)), walk.exists, let name = walk.name,
              let (fd, info) = try? FileIO.openRegular(name, in: walk.folder, flags: O_RDONLY, display: name) else { return nil }
        defer { close(fd) }
        guard let headers = ELFHeaders(fd: fd, size: Int(info.st_size)) else { return nil }
        return (headers, root.full(walk.resolved), info)
    }

    /// The real folders on the way to `path` as named (each prefix resolved) and to where it leads.
    private static func folders(named path: String, real: String, in root: HostRoot) -> Set<String> {
        var result: Set<String> = []
        let named = root.components(of: path)
        for end in 0..<named.count {
            if let folder = try? root.resolve("/" + named[0..<end].joined(separator: "/")) { result.insert(folder) }
        }
        let resolved = root.components(of: real)
        for end in 0..<resolved.count { result.insert(root.full(Array(resolved[0..<end]))) }
        return result
    }

    /// The root's `etc/ld.so.conf` folders, in order (its `include` patterns expanded).
    static func configuredFolders(in root: HostRoot) -> [String] {
        guard let answers = answers(root) else { return readConfiguredFolders(in: root) }
        return answers.folders.value(root.path) { readConfiguredFolders(in: root) }
    }

    private static func readConfiguredFolders(in root: HostRoot) -> [String] {
        var folders: [String] = []
        var files = 0
        func read(_ path: String, depth: Int) {
            guard depth < 4, files < maxConfFiles, folders.count < maxFolders else { return }
            files += 1
            guard let text = (try? FileIO.readText(path, in: root)) ?? nil else { return }
            for raw in text.split(separator: "\n").prefix(1024) {
                let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                let words = line.split(whereSeparator: { " \t\r,:=".contains($0) }).map(String.init)
                guard let first = words.first else { continue }
                if first == "include" {
                    for pattern in words.dropFirst() { include(pattern, from: path, depth: depth) }
                } else if first == "hwcap" {
                    continue
                } else {
                    folders += words.filter { PathText.isAbsolute($0) && !folders.contains($0) }.prefix(maxFolders - folders.count)
                }
            }
        }
        func include(_ pattern: String, from file: String, depth: Int) {
            let absolute = PathText.isAbsolute(pattern) ? pattern : "/" + PathText.components(file).dropLast().joined(separator: "/") + "/" + pattern
            var parts = PathText.components(absolute)
            guard let last = parts.popLast(), !parts.contains(where: { $0.contains(where: { "*?[".contains($0) }) }) else { return }
            let folder = "/" + parts.joined(separator: "/")
            let names = (try? FileIO.list(folder, in: root)) ?? []
            for name in names where fnmatch(last, name, FNM_PERIOD) == 0 {
                read(folder + "/" + name, depth: depth + 1)
            }
        }
        read("/etc/ld.so.conf", depth: 0)
        return folders
    }

    private static func needs(_ program: String, in root: HostRoot) -> [ProgramNeed] {
        guard let (headers, real, info) = openELF(program, in: root) else { return [] }
        let setuidRoot = info.st_uid == 0 && info.st_mode & 0o4000 != 0
        var result: [ProgramNeed] = []
        var interpreterFolder: String?
        // Loaded already: the loader is not opened again as the library `libc.so.6` names (it reads its soname).
        var found: Set<String> = [real]
        if let interpreter = headers.interpreter, PathText.isAbsolute(interpreter), let full = try? root.resolve(interpreter) {
            result.append(ProgramNeed(path: full, shown: shown(full, root), want: 0o1,
                                      folders: folders(named: interpreter, real: full, in: root), asRoot: false))
            interpreterFolder = "/" + root.components(of: full).dropLast().joined(separator: "/")
            found.insert(full)
        }
        guard !headers.needed.isEmpty else { return result }
        var standard = configuredFolders(in: root)
        if let interpreterFolder { standard.append(interpreterFolder) }
        if let tuple = multiarch(headers.machine, wide: headers.wide) { standard += ["/lib/" + tuple, "/usr/lib/" + tuple] }
        standard += headers.wide ? ["/lib64", "/usr/lib64", "/lib", "/usr/lib"] : ["/lib32", "/usr/lib32", "/lib", "/usr/lib"]
        // Breadth first, each library once: (its name, the object that needs it, that object's own search path).
        var queue: [(name: String, rpath: [String], origin: String)] = []
        func enqueue(_ object: ELFHeaders, at real: String) {
            let origin = "/" + root.components(of: real).dropLast().joined(separator: "/")
            let own = (object.runpath.isEmpty ? object.rpath : []) + (real == program ? [] : headers.runpath.isEmpty ? headers.rpath : [])
            let search = (own + object.runpath).map { $0.replacingOccurrences(of: "$ORIGIN", with: origin)
                .replacingOccurrences(of: "${ORIGIN}", with: origin) }.filter { PathText.isAbsolute($0) }
            for name in object.needed { queue.append((name, search, origin)) }
        }
        enqueue(headers, at: real)
        var seen: Set<String> = []
        var index = 0
        var opened = 1
        while index < queue.count, opened < maxObjects {
            let (name, search, _) = queue[index]
            index += 1
            guard seen.insert(name).inserted else { continue }
            let candidates = name.contains("/") ? (PathText.isAbsolute(name) ? [name] : []) : (search + standard).map { $0 + "/" + name }
            for candidate in candidates {
                guard opened < maxObjects else { break }
                opened += 1
                guard let (library, full, _) = openELF(candidate, in: root),
                      library.wide == headers.wide, library.machine == headers.machine else { continue }
                if found.insert(full).inserted {
                    result.append(ProgramNeed(path: full, shown: shown(full, root), want: 0o4,
                                              folders: folders(named: candidate, real: full, in: root), asRoot: setuidRoot))
                    enqueue(library, at: full)
                }
                break
            }
        }
        return result
    }

    private static func shown(_ full: String, _ root: HostRoot) -> String { root.hostPath(root.components(of: full)) }
}
