import BulwarkCore
import Foundation
import Testing

/// `AuditRecord`'s times are `Date`s in the process and the same text at the edges as when they
/// were strings: the JSON file on the audit branch and the trailers read back into an equal
/// record, and a file an earlier version wrote reads and writes back byte for byte.
@Suite struct AuditRecordTimesTests {
    /// What an earlier version (times as text) wrote for a verified fix, byte for byte.
    static let oldJSON = """
    {
      "appliedAt" : "2026-11-22T10:00:01.007Z",
      "changes" : [
        {
          "desired" : "no",
          "observedAfter" : "no",
          "observedBefore" : "yes",
          "property" : "PermitRootLogin"
        }
      ],
      "controller" : "host-hardening",
      "decision" : "applied",
      "desiredCommit" : "0123456789abcdef0123456789abcdef01234567",
      "detectedAt" : "2026-11-22T10:00:00.331Z",
      "id" : "01M82DM6X50HD5B4JKCH9TSFP9",
      "kind" : "SSHDConfig",
      "mode" : "enforce",
      "name" : "baseline-sshd",
      "nextWindowAt" : "2026-11-23T02:00:00.000Z",
      "notes" : [
        "reloaded sshd"
      ],
      "resource" : "SSHDConfig/baseline-sshd",
      "result" : "verified",
      "risk" : 4,
      "severity" : "critical",
      "target" : "web-1",
      "verifiedAt" : "2026-11-22T10:00:01.143Z"
    }

    """

    func date(_ text: String) throws -> Date { try #require(Timestamp.parse(text)) }

    @Test func aRecordReadsBackEqualFromItsJSONAndItsTrailers() throws {
        // A time off the millisecond, as the clock gives it: the record keeps the millisecond it states.
        let detected = Date(timeIntervalSince1970: 1_795_860_000.331_504_7)
        var record = AuditRecord(
            id: "01M82DM6X50HD5B4JKCH9TSFP9", controller: "host-hardening", target: "web-1", resource: "SSHDConfig/baseline-sshd",
            kind: "SSHDConfig", name: "baseline-sshd", severity: .critical, risk: 4, mode: .enforce, decision: .applied,
            result: .verified, reason: nil,
            changes: [.init(property: "PermitRootLogin", desired: "no", observedBefore: "yes", observedAfter: "no")],
            detectedAt: detected, appliedAt: detected.addingTimeInterval(0.6759), verifiedAt: nil,
            desiredCommit: .commit("0123456789abcdef0123456789abcdef01234567"), approver: "ops@example.com", error: nil,
            nextWindowAt: try date("2026-11-23T02:00:00Z"))
        record.verifiedAt = detected.addingTimeInterval(0.8119)
        record.needsRestart = "sshd"
        #expect(Timestamp.format(record.detectedAt) == "2026-11-28T10:00:00.331Z")
        #expect(record.detectedAt == (try date("2026-11-28T10:00:00.331Z")))

        let decoded = try AuditRecord(json: record.json())
        #expect(decoded == record)
        #expect(decoded.json() == record.json())
        let json = String(decoding: record.json(), as: UTF8.self)
        for line in [#""detectedAt" : "2026-11-28T10:00:00.331Z""#, #""appliedAt" : "2026-11-28T10:00:01.007Z""#,
                     #""verifiedAt" : "2026-11-28T10:00:01.143Z""#, #""nextWindowAt" : "2026-11-23T02:00:00.000Z""#] {
            #expect(json.contains(line), "\(line) in \(json)")
        }
        #expect(record.path == "audit/2026/11/28/10/9/P/01M82DM6X50HD5B4JKCH9TSFP9.json")

        let message = record.commitMessage
        for trailer in ["Bulwark-Detected-At: 2026-11-28T10:00:00.331Z", "Bulwark-Applied-At: 2026-11-28T10:00:01.007Z",
                        "Bulwark-Verified-At: 2026-11-28T10:00:01.143Z", "Bulwark-Next-Window: 2026-11-23T02:00:00.000Z"] {
            #expect(message.contains("\n" + trailer + "\n"), "\(trailer)")
        }
        let lines = message.split(separator: "\n")
        let recorded = try #require(RecordedDecision(trailer: { key in
            lines.first { $0.hasPrefix(key.rawValue + ": ") }.map { String($0.dropFirst(key.rawValue.count + 2)) }
        }))
        #expect(recorded.detectedAt == record.detectedAt && recorded.appliedAt == record.appliedAt)
        #expect(recorded.verifiedAt == record.verifiedAt && recorded.nextWindow == record.nextWindowAt)
    }

    @Test func aRecordAnEarlierVersionWroteReadsAndWritesBackTheSameBytes() throws {
        let record = try AuditRecord(json: Array(Self.oldJSON.utf8))
        #expect(record.detectedAt == (try date("2026-11-22T10:00:00.331Z")))
        #expect(record.appliedAt == (try date("2026-11-22T10:00:01.007Z")))
        #expect(record.verifiedAt.map { abs($0.timeIntervalSince(record.detectedAt) - 0.812) < 1e-6 } == true)
        #expect(record.nextWindowAt == (try date("2026-11-23T02:00:00Z")))
        #expect(String(decoding: record.json(), as: UTF8.self) == Self.oldJSON)
        // A time without fractional seconds (written by hand, or by another tool) reads too.
        let plain = Self.oldJSON.replacingOccurrences(of: "2026-11-22T10:00:00.331Z", with: "2026-11-22T10:00:00Z")
        #expect(try AuditRecord(json: Array(plain.utf8)).detectedAt == (try date("2026-11-22T10:00:00.000Z")))
    }

    @Test func aRecordWithAMalformedTimeIsRefusedNamingTheField() throws {
        let broken = Self.oldJSON.replacingOccurrences(of: "2026-11-22T10:00:01.007Z", with: "yesterday")
        #expect {
            _ = try AuditRecord(json: Array(broken.utf8))
        } throws: { error in
            "\(error)".contains("appliedAt")
        }
        let missing = Self.oldJSON.replacingOccurrences(of: #"  "detectedAt" : "2026-11-22T10:00:00.331Z",\#n"#, with: "")
        #expect(throws: DecodingError.self) { _ = try AuditRecord(json: Array(missing.utf8)) }
    }

    /// Foundation's ISO 8601 style printed a time read back from `.331` as `.330` about half the
    /// time; the record's text is stable.
    @Test func everyMillisecondReadsBackAsTheSameText() throws {
        for second in [0, 1_795_860_000, 4_102_444_799] {
            for millis in 0..<1000 {
                let text = Timestamp.format(Date(timeIntervalSince1970: Double(second) + Double(millis) / 1000))
                let back = try #require(Timestamp.parse(text))
                #expect(Timestamp.format(back) == text && text.hasSuffix(String(format: ".%03dZ", millis)), "\(text)")
                #expect(Timestamp.recorded(back) == back)
            }
        }
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1_795_860_000.999_9)) == "2026-11-28T10:00:00.999Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: -0.5)) == "1969-12-31T23:59:59.500Z")
    }
}
