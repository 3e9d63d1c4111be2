public import Foundation

/// When a controller may change things: days of the week and a time of day in a time zone.
/// A window whose end is before its start runs past midnight.
public struct ChangeWindow: Sendable, Hashable {
    public static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    /// Days the window opens, 1 = Sunday ... 7 = Saturday (as `Calendar` counts).
    public var days: Set<Int>
    /// Minutes after midnight.
    public var start: Int
    public var end: Int
    public var timeZone: TimeZone

    public init(days: Set<Int>, start: Int, end: Int, timeZone: TimeZone) {
        self.days = days
        self.start = start
        self.end = end
        self.timeZone = timeZone
    }

    private var calendar: Calendar {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        return calendar
    }

    /// Whether `date` falls in the window.
    public func contains(_ date: Date) -> Bool {
        let calendar = calendar
        let parts = calendar.dateComponents([.weekday, .hour, .minute], from: date)
        guard let weekday = parts.weekday else { return false }
        let minute = (parts.hour ?? 0) * 60 + (parts.minute ?? 0)
        if start < end { return days.contains(weekday) && minute >= start && minute < end }
        // Past midnight: the evening part opens on a listed day, the morning part belongs to the day before.
        let previous = weekday == 1 ? 7 : weekday - 1
        return (days.contains(weekday) && minute >= start) || (days.contains(previous) && minute < end)
    }

    /// The next moment the window opens after `date` (within the next eight days).
    public func nextOpening(after date: Date) -> Date? {
        let calendar = calendar
        let midnight = calendar.startOfDay(for: date)
        for offset in 0...8 {
            guard let day = calendar.date(byAdding: .day, value: offset, to: midnight),
                  days.contains(calendar.component(.weekday, from: day)),
                  let opening = calendar.date(byAdding: .minute, value: start, to: day) else { continue }
            if opening > date { return opening }
        }
        return nil
    }
}
