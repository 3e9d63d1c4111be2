import BulwarkTestSupport
import Foundation
import Testing

/// The `nm` that reads the binary's symbols back.
let orderFileNM = ["/usr/bin/nm", "/opt/swift/usr/bin/llvm-nm"].first { FileManager.default.isExecutableFile(atPath: $0) }

/// packaging/bulwark.order, the order in which a release build lays out the functions the usual
/// commands run (`make release`): the linker skips a name the code no longer has, so an order
/// left behind by the code loses its effect without a word. This says when to run
/// scripts/order-file again. Read against the built binary with `nm` (a debug build has the
/// same names for Bulwark's own functions, bar the specialised copies only a release build makes).
@Suite(.enabled(if: orderFileNM != nil, "needs nm (binutils)"))
struct OrderFileTests {
    static let orderFile = PackagingTests.repositoryRoot + "/packaging/bulwark.order"

    /// Bulwark's own functions (mangled as in one of its modules).
    static func isOwn(_ name: Substring) -> Bool {
        name.hasPrefix("$s") && name.dropFirst(2).drop { $0.isNumber }.hasPrefix("Bulwark")
    }

    @Test func theOrderStillNamesTheFunctionsTheBinaryHas() throws {
        let order = try read(Self.orderFile).split(separator: "\n")
        #expect(Set(order).count == order.count, "a name listed twice")
        let own = order.filter(Self.isOwn)
        let output = try run(try #require(orderFileNM), ["--defined-only", try bulwarkExecutable()])
        #expect(output.status == 0, "\(output.stderr)")
        var functions = Set<Substring>()
        for line in output.stdout.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 3, ["t", "T", "w", "W"].contains(fields[1]), Self.isOwn(fields[2]) { functions.insert(fields[2]) }
        }
        try #require(!functions.isEmpty, "the binary has no symbol table (stripped?): nothing to compare the order with")
        // When generated, 80 % of its own names are in a debug build (the rest are release-only
        // specialisations and merged functions), and 96 % of the first 200, the start-up path.
        // The rest of the order (the Swift runtime's, Foundation's, the dependencies') is not
        // checked: those names change only with the toolchain and the pinned versions.
        let present = own.filter(functions.contains).count
        let first = own.prefix(200), firstPresent = first.filter(functions.contains).count
        #expect(own.count > 1_000 && present * 2 > own.count,
                "\(present) of the order's \(own.count) Bulwark functions are in the binary: run scripts/order-file")
        #expect(firstPresent * 4 > first.count * 3,
                "\(firstPresent) of the order's first \(first.count) Bulwark functions are in the binary: run scripts/order-file")
    }
}
