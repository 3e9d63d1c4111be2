@testable import BulwarkHost
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

/// What a plan keeps of the targets it reads (`PlanReads`): each root opened once and closed
/// with the plan, and a path's walk and file reused within that plan only. A fix (under the
/// target's lock), another plan, and any read outside a plan walk afresh.
@Suite struct PlanReadsTests {
    let contentCache = ContentCache<String>()

    /// Runs `body` holding the target's lock, released when it returns.
    func underLock(_ root: HostRoot, _ body: () throws -> Void) throws {
        let lock = try HostLock(root)
        try withExtendedLifetime(lock) { try body() }
    }

    func firstLine(_ file: HostFile) -> String {
        String(decoding: file.bytes, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
    }

    /// A file old enough that its parse is kept for every reader (not only the plan that read it).
    func writeOld(_ path: String, _ text: String) throws {
        try write(path, text)
        setModified(path, Int(Date().timeIntervalSince1970) - 3600)
    }

    @Test func aPlanHoldsEachRootOpenOnceAndClosesItWithThePlan() async throws {
        try await withTemporaryDirectory { base in
            try writeOld(base + "/etc/login.defs", "UMASK 077\n")
            let root = try HostRoot(base)
            weak var held: Directory?
            try ObservationScope.$current.withValue(ObservationScope()) {
                #expect(try root.resolve("etc/login.defs") == base + "/etc/login.defs")
                held = PlanReads.current?.root(base)
                #expect(held != nil, "the plan holds the root it read")
                let again = try root.rootForReading()
                #expect(again === held, "the plan's next read starts from the same descriptor")
                #expect(try FileIO.read("etc/login.defs", in: root) != nil)
            }
            #expect(held == nil, "released (and closed) with the plan")
            // Outside any plan, every read opens the root afresh.
            let first = try root.rootForReading(), second = try root.rootForReading()
            #expect(first !== second)
        }
    }

    /// Within a plan a path's file is the one its first read found (one snapshot of the target);
    /// another plan and a read outside any plan see the file as it is now.
    @Test func aPathReadsAsOneSnapshotWithinAPlanOnly() async throws {
        try await withTemporaryDirectory { base in
            try writeOld(base + "/etc/conf", "first\n")
            // Changed more than two whole seconds ago: kept for every reader.
            try await Task.sleep(for: .milliseconds(3_200))
            let root = try HostRoot(base)
            let plan = ObservationScope()
            let before = try ObservationScope.$current.withValue(plan) { try contentCache.value("etc/conf", in: root, parse: firstLine) }
            #expect(before == "first")
            // Replaced by a rename: another inode; an old modification time.
            try writeOld(base + "/etc/conf.new", "second\n")
            #expect(rename(base + "/etc/conf.new", base + "/etc/conf") == 0)
            let same = try ObservationScope.$current.withValue(plan) { try contentCache.value("etc/conf", in: root, parse: firstLine) }
            #expect(same == "first", "the same plan: its snapshot")
            try ObservationScope.$current.withValue(plan) {
                try underLock(root) { () throws in
                    #expect(try contentCache.value("etc/conf", in: root, parse: firstLine) == "second", "a fix in the plan's scope: read")
                }
            }
            let next = try ObservationScope.$current.withValue(ObservationScope()) { try contentCache.value("etc/conf", in: root, parse: firstLine) }
            #expect(next == "second", "the next plan reads the file as it is")
            #expect(try contentCache.value("etc/conf", in: root, parse: firstLine) == "second", "outside a plan: read")
        }
    }

    /// A file changed a moment ago (its identity cannot be trusted across a same-size rewrite)
    /// is parsed once for the plan that read it: its other resources on the target share the
    /// parse. Another plan, a fix under the lock and a read outside any plan parse it again,
    /// and outside a plan nothing is kept. Without the plan's entry, each read in the plan
    /// parsed the file again (a host's four login.defs keys: four parses after a drift).
    @Test func aRecentFilesParseServesOnlyThePlanThatReadIt() async throws {
        try await withTemporaryDirectory { base in
            try write(base + "/etc/conf", "first\n")
            // Stamped an hour ahead: recent however long the test takes (a loaded machine).
            setModified(base + "/etc/conf", Int(Date().timeIntervalSince1970) + 3600)
            let root = try HostRoot(base)
            let parses = Atomic(0)
            func counted(_ file: HostFile) -> String {
                parses.add(1, ordering: .relaxed)
                return firstLine(file)
            }
            func read() throws -> String? { try contentCache.value("etc/conf", in: root, parse: counted) }

            #expect(try read() == "first")
            #expect(try read() == "first")
            #expect(parses.load(ordering: .relaxed) == 2, "outside a plan: read every time, nothing kept")

            let plan = ObservationScope()
            let inPlan = try ObservationScope.$current.withValue(plan) { [try read(), try read(), try read()] }
            #expect(inPlan == ["first", "first", "first"])
            #expect(parses.load(ordering: .relaxed) == 3, "the plan parses it once")
            try ObservationScope.$current.withValue(plan) {
                try underLock(root) { () throws in #expect(try read() == "first") }
            }
            #expect(parses.load(ordering: .relaxed) == 4, "a fix in the plan's scope reads afresh")
            _ = try ObservationScope.$current.withValue(ObservationScope()) { try read() }
            #expect(parses.load(ordering: .relaxed) == 5, "another plan parses it again")
            _ = try read()
            #expect(parses.load(ordering: .relaxed) == 6, "outside a plan: not served by a plan's parse")
        }
    }

    /// A root's sshd configuration reads, within a plan, as the plan first read it, without a
    /// walk: even after its folder is swapped for a link to another configuration. Under the
    /// lock, in the next plan and outside a plan it is read as it is now.
    @Test func aPlanReadsARootsSSHDConfigurationOnce() async throws {
        try await withTemporaryDirectory { base in
            try write(base + "/etc/ssh/sshd_config", "PermitRootLogin yes\n")
            try write(base + "/persist/ssh/sshd_config", "PermitRootLogin no\n")
            let root = try HostRoot(base)
            let driver = SSHDConfigDriver(validator: SSHDValidator(executable: nil))
            func rootLogin() throws -> String? { try driver.read(root).effective("PermitRootLogin")?.value }
            let plan = ObservationScope()
            #expect(try ObservationScope.$current.withValue(plan) { try rootLogin() } == "yes")

            #expect(rename(base + "/etc/ssh", base + "/etc/ssh.old") == 0)
            try link(base + "/etc/ssh", to: "../persist/ssh")
            #expect(try ObservationScope.$current.withValue(plan) { try rootLogin() } == "yes", "the same plan: its first read")
            let underLock = try ObservationScope.$current.withValue(plan) {
                try withExtendedLifetime(try HostLock(root)) { try rootLogin() }
            }
            #expect(underLock == "no", "a fix in the plan's scope reads afresh")
            #expect(try ObservationScope.$current.withValue(ObservationScope()) { try rootLogin() } == "no", "the next plan reads afresh")
            #expect(try rootLogin() == "no", "outside a plan: read afresh")
        }
    }

    /// A fix holds the target's lock: even inside a plan's scope, it opens the root and walks
    /// every path afresh, and a folder swapped for a link since the plan's walk is refused. A
    /// path's resolution is never kept, in a plan either (callers `stat` the path it gives).
    @Test func underTheLockAPlansWalksAreNotReused() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { base in
            try writeOld(base + "/etc/ssh/sshd_config", "Port 22\n")
            try writeOld(base + "/elsewhere/sshd_config", "Port 2222\n")
            let root = try HostRoot(base)
            try ObservationScope.$current.withValue(ObservationScope()) {
                #expect(try root.resolve("etc/ssh/sshd_config") == base + "/etc/ssh/sshd_config")
                let held = PlanReads.current?.root(base)
                // The folder becomes a link a user made (links are followed only when root or the
                // root's owner made them).
                #expect(rename(base + "/etc/ssh", base + "/etc/ssh.old") == 0)
                #expect(symlink(base + "/elsewhere", base + "/etc/ssh") == 0)
                #expect(lchown(base + "/etc/ssh", 65534, 65534) == 0)
                try underLock(root) { () throws in
                    #expect(try root.rootForReading() !== held, "under the lock: the root opened afresh")
                    #expect(throws: HostError.self, "under the lock: walked again, the user's link refused") {
                        try root.resolve("etc/ssh/sshd_config")
                    }
                }
                #expect(!HostLock.isHeld(root))
                #expect(throws: HostError.self, "resolved paths are walked in a plan too") { try root.resolve("etc/ssh/sshd_config") }
            }
            #expect(throws: HostError.self, "outside the plan: walked, refused") { try root.resolve("etc/ssh/sshd_config") }
        }
    }
}

extension PlanReadsTests {
    /// Threads listing the plan's held root at once each see every entry: a listing reads through
    /// a descriptor of its own, not a duplicate sharing the read position (a reviewer's repro:
    /// 35 of 200 listings wrong).
    @Test func listingsOfTheHeldRootAtOnceAreWhole() async throws {
        try await withTemporaryDirectory { base in
            for index in 0..<2_000 {
                let fd = creat(base + "/f\(index)", 0o644)
                #expect(fd >= 0)
                close(fd)
            }
            let root = try HostRoot(base)
            let wrong = try await ObservationScope.$current.withValue(ObservationScope()) {
                _ = try root.rootForReading()
                return try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<4 {
                        group.addTask {
                            var wrong = 0
                            for _ in 0..<25 where try FileIO.list("", in: root).count != 2_000 { wrong += 1 }
                            return wrong
                        }
                    }
                    return try await group.reduce(0, +)
                }
            }
            #expect(wrong == 0)
        }
    }
}
