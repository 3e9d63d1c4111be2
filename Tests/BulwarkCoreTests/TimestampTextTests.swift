@testable import BulwarkCore
import Foundation
import Testing

/// `Timestamp` writes and reads record times by arithmetic from 1970 to 9999, so the ICU data
/// behind Foundation's calendar is never mapped in: the text must be exactly what Foundation's
/// ISO 8601 style wrote before, and reading it must give the same time Foundation's parse gave.
@Suite struct TimestampTextTests {
    /// Times every record could hold: the edges of days, months, leap days and centuries, and
    /// random milliseconds across 1970 to 9999.
    static func samples() -> [Int64] {
        var millis: [Int64] = [0, 999, 1000, 86_399_999, 86_400_000, 951_782_400_000, 951_868_799_999, 951_868_800_000,
                               4_107_542_399_999, 4_107_542_400_000, 1_795_860_000_331, 253_402_300_799_999, 1_709_164_800_000]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 { millis.append(Int64.random(in: 0..<253_402_300_800_000, using: &rng)) }
        // Around now, where records are: ±20 years.
        for _ in 0..<5_000 { millis.append(Int64.random(in: 1_500_000_000_000..<2_400_000_000_000, using: &rng)) }
        return millis
    }

    @Test func theTextIsWhatFoundationsStyleWrites() {
        var differing: [String] = []
        for millis in Self.samples() {
            let (whole, part) = millis.quotientAndRemainder(dividingBy: 1000)
            let date = Date(timeIntervalSince1970: Double(millis) / 1000)
            let fast = Timestamp.civilText(seconds: whole, milliseconds: Int(part))
            let foundation = Timestamp.foundationFormat(whole: whole, part: part, date: date)
            if fast != foundation { differing.append("\(millis): \(fast ?? "nil") against \(foundation)") }
            if Timestamp.format(date) != foundation { differing.append("format \(millis): \(Timestamp.format(date))") }
        }
        #expect(differing.isEmpty, "\(differing.prefix(5))")
    }

    @Test func readingTheTextGivesWhatFoundationsParseGave() throws {
        var differing: [String] = []
        let withFraction = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        for millis in Self.samples() {
            let date = Date(timeIntervalSince1970: Double(millis) / 1000)
            let text = Timestamp.format(date)
            let foundation = Timestamp.recorded(try withFraction.parse(text))
            if Timestamp.parse(text) != foundation { differing.append(text) }
            if Timestamp.civilMilliseconds(text) != millis { differing.append("\(text) is not \(millis)") }
            // Without the fraction, as hand-written times and older records state them.
            let whole = String(text.prefix(19)) + "Z"
            let wholeFoundation = Timestamp.recorded(try Date.ISO8601FormatStyle().parse(whole))
            if Timestamp.parse(whole) != wholeFoundation { differing.append(whole) }
        }
        #expect(differing.isEmpty, "\(differing.prefix(5))")
    }

    /// Text the arithmetic does not take is still read, by Foundation, as before; and a date
    /// that does not exist is not made into one.
    @Test func otherTextIsLeftToFoundation() throws {
        for text in ["1969-12-31T23:59:59.999Z", "2026-11-22T10:00:00.1Z", "2026-11-22T10:00:00.12345Z",
                     "2026-11-22T10:00:00+01:00", "2026-02-30T10:00:00Z", "2026-13-01T00:00:00Z", "2026-11-22T24:00:00Z",
                     "2026-11-22 10:00:00Z", "２０２６-11-22T10:00:00Z", "2026-11-22T10:00:00.abcZ", ""] {
            #expect(Timestamp.civilMilliseconds(text) == nil, "\(text)")
            let foundation = (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text))
                ?? (try? Date.ISO8601FormatStyle().parse(text))
            #expect(Timestamp.parse(text) == foundation.map(Timestamp.recorded), "\(text)")
        }
        #expect(Timestamp.civilText(seconds: -1, milliseconds: 0) == nil)
        #expect(Timestamp.civilText(seconds: 253_402_300_800, milliseconds: 0) == nil)
        #expect(Timestamp.format(Date(timeIntervalSince1970: -0.5)) == "1969-12-31T23:59:59.500Z")
    }

    /// A day (`expires:`, `--expires`, `--since`) is exactly `YYYY-MM-DD` and a day of the
    /// calendar: nothing after it is dropped and no day is moved into the next month, as
    /// Foundation's ISO 8601 style reads them; the day loads as the `endOfDay` it names.
    @Test func aDayIsExactlyADayOfTheCalendar() throws {
        for text in ["2027-01-05xyz; rm -rf /", "2027-02-30", "2027-02-29", "2027-02-30x", "2027-1-5x", "2027--5", "27-01-05", "2027-001-05", "2027-01-05T10:00:00Z",
                     " 2027-01-05", "2027-01-05 ", "+2027-01-05", "２０２７-01-05", "2027/01/05", "2027-13-01", "2027-00-10",
                     "2027-04-31", "2100-02-29", "1969-12-31", "", "2027-01-0５"] {
            #expect(Timestamp.day(text) == nil, "\(text.debugDescription)")
            #expect(DesiredStateLoader.endOfDay(text) == nil, "\(text.debugDescription)")
        }
        for (text, seconds) in [("2028-02-29", 1_835_395_200.0), ("2000-02-29", 951_782_400), ("1970-01-01", 0), ("9999-12-31", 253_402_214_400),
                                ("2027-01-31", 1_801_353_600),
                                // One digit of month or day, as policies written before may have it.
                                ("2027-1-5", 1_799_107_200), ("2027-1-31", 1_801_353_600)] {
            #expect(Timestamp.day(text) == Date(timeIntervalSince1970: seconds), "\(text)")
            #expect(DesiredStateLoader.endOfDay(text) == Date(timeIntervalSince1970: seconds + 86_400), "\(text)")
        }
    }
}
