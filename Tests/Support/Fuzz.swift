internal import Foundation

// MARK: - A deterministic fuzzer for the parsers

/// SplitMix64: a small generator that gives the same sequence for a seed on every machine, so a
/// CI run is reproducible and a failure names the seed and iteration that found it.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One fuzz target's run: seeds mutated by the hostile edits an attacker would try, each result
/// checked by the target's properties.
///
/// In CI a run is bounded by iterations (`ciIterations`, a few seconds). A longer campaign is
/// `BULWARK_FUZZ_ITERATIONS=N` (or `BULWARK_FUZZ_SECONDS=S`, which runs until that much time has
/// passed), with `BULWARK_FUZZ_SEED` to explore another sequence. During a campaign every input is
/// written to `BULWARK_FUZZ_OUT/<target>/last-input` (default `/tmp/bulwark-fuzz`) before it
/// runs, so the input of a crash that kills the process is kept; inputs that break a property are
/// kept there too. Each one found goes in `Tests/Corpus/<target>/`, which `replayCorpus` runs on
/// every test run.
public struct Fuzzer {
    public let target: String
    public let iterations: Int
    public let seed: UInt64
    /// Wall-clock budget of a campaign (`BULWARK_FUZZ_SECONDS`), or nil.
    public let seconds: Double?
    /// Whether this is a campaign (inputs saved as they run) rather than the CI run.
    public let isCampaign: Bool
    /// Target-specific tokens spliced in by the mutator (keywords, separators).
    public var dictionary: [[UInt8]]
    /// Longest input the mutator grows to.
    public var maxSize: Int

    public init(target: String, ciIterations: Int, dictionary: [String] = [], maxSize: Int = 256 << 10) {
        let env = ProcessInfo.processInfo.environment
        self.target = target
        let requested = env["BULWARK_FUZZ_ITERATIONS"].flatMap { Int($0) }
        seconds = env["BULWARK_FUZZ_SECONDS"].flatMap { Double($0) }
        isCampaign = requested != nil || seconds != nil
        iterations = seconds != nil ? Int.max : max(requested ?? ciIterations, 0)
        // The default seed is fixed per target (FNV-1a of its name): the CI run is the same every time.
        seed = env["BULWARK_FUZZ_SEED"].flatMap { UInt64($0) } ?? target.utf8.reduce(0xCBF2_9CE4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
        self.dictionary = dictionary.map { Array($0.utf8) }
        self.maxSize = maxSize
    }

    /// Where a campaign keeps the inputs it is running and the ones that failed.
    public var outputDirectory: String {
        (ProcessInfo.processInfo.environment["BULWARK_FUZZ_OUT"] ?? "/tmp/bulwark-fuzz") + "/" + target
    }

    /// What a run saw: how many inputs, how many distinct outcomes, the slowest input.
    public struct Summary: Sendable, CustomStringConvertible {
        public var target: String
        public var seed: UInt64
        public var inputs = 0
        public var outcomes = 0
        public var failures = 0
        /// The first few failures, each with its input (escaped, cut short).
        public var messages: [String] = []
        public var slowest: Duration = .zero
        public var slowestSize = 0
        public var largest = 0
        public var description: String {
            "fuzz \(target): \(inputs) inputs (seed \(seed)), \(outcomes) distinct outcomes, \(failures) failures; "
                + "largest input \(largest) bytes; slowest \(slowest) for \(slowestSize) bytes"
        }
    }

    /// Mutates the seeds `iterations` times and checks each input. `check` throws (or records an
    /// issue) when a property does not hold, and returns a short signature of what happened (the
    /// error's kind, "ok"): an input with a signature not seen before joins the pool the mutator
    /// draws from, which steers the run toward new behaviour without coverage instrumentation.
    @discardableResult
    public func run(seeds: [[UInt8]], check: ([UInt8]) async throws -> String) async -> Summary {
        var random = SeededGenerator(seed: seed)
        var pool = seeds.isEmpty ? [[]] : seeds
        var seen: Set<String> = []
        var summary = Summary(target: target, seed: seed)
        let clock = ContinuousClock()
        let started = clock.now
        if isCampaign { try? FileManager.default.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true) }
        // The seeds themselves first, then mutations.
        var index = 0
        while index < iterations {
            if let seconds, clock.now - started > .seconds(seconds) { break }
            let input: [UInt8]
            if index < seeds.count {
                input = seeds[index]
            } else {
                var candidate = pool[Int(random.next(upperBound: UInt64(pool.count)))]
                for _ in 0...Int(random.next(upperBound: UInt64(4))) { candidate = mutate(candidate, pool: pool, using: &random) }
                input = candidate
            }
            index += 1
            if isCampaign { _ = FileManager.default.createFile(atPath: outputDirectory + "/last-input", contents: Data(input)) }
            let before = clock.now
            let signature: String
            do {
                signature = try await check(input)
            } catch {
                summary.failures += 1
                signature = "failure"
                let name = "failure-\(summary.failures)"
                if isCampaign { _ = FileManager.default.createFile(atPath: outputDirectory + "/" + name, contents: Data(input)) }
                if summary.messages.count < 5 {
                    summary.messages.append(Self.report(target: target, error: error, input: input, where: "seed \(seed), iteration \(index)"))
                }
            }
            let took = clock.now - before
            summary.inputs += 1
            summary.largest = max(summary.largest, input.count)
            if took > summary.slowest {
                summary.slowest = took
                summary.slowestSize = input.count
                if isCampaign { _ = FileManager.default.createFile(atPath: outputDirectory + "/slowest-input", contents: Data(input)) }
            }
            if seen.insert(signature).inserted, pool.count < 4096 { pool.append(input) }
        }
        summary.outcomes = seen.count
        if isCampaign { print(summary) }
        return summary
    }

    /// The inputs kept in `Tests/Corpus/<target>/` (crashes found by a campaign and the hostile
    /// inputs of the issue that started the fuzzing), each checked as in `run`.
    public static func replayCorpus(_ target: String, check: ([UInt8]) async throws -> String) async throws -> (count: Int, failures: [String]) {
        let folder = corpusDirectory(target)
        let names = try FileManager.default.contentsOfDirectory(atPath: folder).filter { !$0.hasPrefix(".") }.sorted()
        var failures: [String] = []
        for name in names {
            guard let data = FileManager.default.contents(atPath: folder + "/" + name) else {
                throw SupportError("cannot read corpus file \(folder)/\(name)")
            }
            do {
                _ = try await check(Array(data))
            } catch {
                failures.append(report(target: target, error: error, input: Array(data), where: "corpus file \(name)"))
            }
        }
        return (names.count, failures)
    }

    /// `Tests/Corpus/<target>` in this checkout.
    public static func corpusDirectory(_ target: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Corpus").appendingPathComponent(target).path
    }

    /// A broken property, with its input (escaped and cut short).
    static func report(target: String, error: any Error, input: [UInt8], where place: String) -> String {
        ("fuzz \(target): \(error) — at \(place), input (\(input.count) bytes): \(escaped(input.prefix(400)))")
    }

    /// Bytes as printable ASCII with escapes, for a failure message.
    public static func escaped(_ bytes: some Sequence<UInt8>) -> String {
        var text = ""
        for byte in bytes {
            switch byte {
            case 0x20...0x7E where byte != 0x5C: text.unicodeScalars.append(Unicode.Scalar(byte))
            case 0x0A: text += "\\n"
            default: text += "\\x" + String(byte, radix: 16, uppercase: true).leftPadded(2)
            }
        }
        return text
    }

    // MARK: - Mutations

    /// Line breaks YAML or a line-oriented file reads (CR, CRLF, VT, FF, NEL, U+2028/2029, LF),
    /// NUL and other controls, a BOM.
    public static let controls: [[UInt8]] = [
        [0x0D], [0x0D, 0x0A], [0x0B], [0x0C], [0xC2, 0x85], [0xE2, 0x80, 0xA8], [0xE2, 0x80, 0xA9], [0x00], [0x1B],
        [0x7F], [0x09], [0x0A], [0xEF, 0xBB, 0xBF],
    ]
    /// Invalid UTF-8 (a lone continuation, 0xFF, an overlong NUL, a surrogate, a truncated
    /// sequence, past U+10FFFF) and the private-use scalars Bulwark carries invalid bytes as.
    public static let invalidUTF8: [[UInt8]] = [
        [0x80], [0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xE2, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBE, 0x80],
        [0xF4, 0x8F, 0xBF, 0xBF],
    ]
    /// Huge and odd numbers, in the forms parsers read them.
    public static let numbers: [[UInt8]] = [
        "9223372036854775807", "9223372036854775808", "-9223372036854775808", "18446744073709551616",
        "99999999999999999999999999999999", "9223372036854775807w", "1e308", "-0", "0x7fffffff", "0777777777777",
        "4294967295", "4294967296", "-1", "00000000000000000000000001", ".inf", "NaN", "106751991167300d",
    ].map { Array($0.utf8) }
    /// YAML's anchors, aliases, tags, merge keys, directives, and structure characters.
    public static let syntax: [[UInt8]] = [
        "&a ", "*a", "&b [*a, *a, *a, *a]", "<<: *a", "!!binary ", "!<tag:yaml.org,2002:str> ", "? ", "---\n", "...\n",
        "%YAML 1.1\n", "%TAG ! tag:x,2024:\n", "{", "}", "[", "]", "\"", "'", "\\", "#", ":", "::", "=", " ", "\t",
        "\"\\u2028\"", "\"\\N\"", "\"\\x00\"", "\"\\U0010FFFF\"", "\"\\uD800\"",
    ].map { Array($0.utf8) }
    public static let hostileFragments = controls + invalidUTF8 + numbers + syntax

    /// One hostile edit of `input`.
    public func mutate(_ input: [UInt8], pool: [[UInt8]], using random: inout SeededGenerator) -> [UInt8] {
        var bytes = input
        func position(_ bytes: [UInt8]) -> Int { Int(random.next(upperBound: UInt64(bytes.count + 1))) }
        func pick<T>(_ items: [T]) -> T { items[Int(random.next(upperBound: UInt64(items.count)))] }
        switch random.next(upperBound: UInt64(14)) {
        case 0 where !bytes.isEmpty:  // flip one bit
            let i = Int(random.next(upperBound: UInt64(bytes.count)))
            bytes[i] ^= UInt8(1) << UInt8(random.next(upperBound: UInt64(8)))
        case 1 where !bytes.isEmpty:  // one byte, any value
            bytes[Int(random.next(upperBound: UInt64(bytes.count)))] = UInt8(truncatingIfNeeded: random.next())
        case 2, 3:  // a hostile fragment
            bytes.insert(contentsOf: pick(Self.hostileFragments), at: position(bytes))
        case 4 where !dictionary.isEmpty:  // a token of the format
            bytes.insert(contentsOf: pick(dictionary), at: position(bytes))
        case 5:  // replace a run of digits with a huge or odd number
            if let digit = bytes.indices.shuffled(using: &random).first(where: { (0x30...0x39).contains(bytes[$0]) }) {
                var end = digit
                while end < bytes.count, (0x30...0x39).contains(bytes[end]) { end += 1 }
                bytes.replaceSubrange(digit..<end, with: pick(Self.numbers))
            } else {
                bytes.insert(contentsOf: Array("9223372036854775807".utf8), at: position(bytes))
            }
        case 6:  // deep nesting
            let depth = pick([70, 200, 2_000, 20_000])
            let (open, close): ([UInt8], [UInt8]) = pick([(Array("[".utf8), Array("]".utf8)), (Array("{a: ".utf8), Array("}".utf8)),
                                                          (Array("- ".utf8), [])])
            let at = position(bytes)
            var nest: [UInt8] = []
            for _ in 0..<depth { nest += open }
            nest += Array("x".utf8)
            for _ in 0..<depth { nest += close }
            bytes.insert(contentsOf: nest, at: at)
        case 7:  // a very long line
            let chunk = bytes.isEmpty ? Array("x".utf8) : Array(bytes[bytes.index(bytes.startIndex, offsetBy: min(position(bytes), bytes.count - 1))...].prefix(16))
            let length = pick([4_096, 65_536, 200_000])
            var long: [UInt8] = []
            long.reserveCapacity(length + chunk.count)
            while long.count < length { long += chunk }
            bytes.insert(contentsOf: long, at: position(bytes))
        case 8:  // a line repeated with its key's case changed (duplicate keys with case variants)
            let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
            guard !lines.isEmpty else { break }
            let line = pick(lines)
            let variant = line.map { byte -> UInt8 in
                (0x41...0x5A).contains(byte) ? byte + 32 : (0x61...0x7A).contains(byte) ? byte - 32 : byte
            }
            let flipped = random.next(upperBound: UInt64(2)) == 0 ? variant : Array(line)
            var out: [UInt8] = []
            let at = Int(random.next(upperBound: UInt64(lines.count)))
            for (i, l) in lines.enumerated() {
                if i == at { out += flipped + [0x0A] }
                out += l
                if i < lines.count - 1 { out.append(0x0A) }
            }
            bytes = out
        case 9:  // anchors and aliases: name a value, then use it many times
            let anchor = "&z" + String(random.next(upperBound: UInt64(3))) + " "
            let alias = "*z" + String(random.next(upperBound: UInt64(3)))
            bytes.insert(contentsOf: Array(anchor.utf8), at: position(bytes))
            let uses = Array(repeating: alias, count: pick([1, 10, 1000])).joined(separator: ", ")
            bytes.insert(contentsOf: Array(("[" + uses + "]").utf8), at: position(bytes))
        case 10 where bytes.count > 1:  // delete a chunk
            let start = Int(random.next(upperBound: UInt64(bytes.count)))
            let length = Int(random.next(upperBound: UInt64(min(bytes.count - start, 64) + 1)))
            bytes.removeSubrange(start..<(start + length))
        case 11 where !bytes.isEmpty:  // duplicate a chunk
            let start = Int(random.next(upperBound: UInt64(bytes.count)))
            let length = Int(random.next(upperBound: UInt64(min(bytes.count - start, 256) + 1)))
            bytes.insert(contentsOf: bytes[start..<(start + length)], at: position(bytes))
        case 12:  // splice in part of another input
            let other = pick(pool)
            guard !other.isEmpty else { break }
            let start = Int(random.next(upperBound: UInt64(other.count)))
            let length = Int(random.next(upperBound: UInt64(min(other.count - start, 512) + 1)))
            bytes.insert(contentsOf: other[start..<(start + length)], at: position(bytes))
        default:  // a hostile fragment next to a line break, where parsers decide what a line is
            if let newline = bytes.indices.shuffled(using: &random).first(where: { bytes[$0] == 0x0A }) {
                bytes.insert(contentsOf: pick(Self.controls + Self.invalidUTF8), at: newline)
            } else {
                bytes.insert(contentsOf: pick(Self.hostileFragments), at: position(bytes))
            }
        }
        return bytes.count > maxSize ? Array(bytes.prefix(maxSize)) : bytes
    }
}

/// A broken fuzz property, with what was expected.
public struct FuzzPropertyFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Throws when a property does not hold.
public func fuzzRequire(_ condition: Bool, _ message: @autoclosure () -> String) throws(FuzzPropertyFailure) {
    if !condition { throw FuzzPropertyFailure(message()) }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// The Unicode scalars that end or split a line for some reader: every Cc control (CR, LF, VT,
/// FF, NUL, ESC, NEL…) and U+2028/U+2029.
public func isLineBreaking(_ scalar: Unicode.Scalar) -> Bool {
    scalar.properties.generalCategory == .control || scalar.value == 0x2028 || scalar.value == 0x2029
}
