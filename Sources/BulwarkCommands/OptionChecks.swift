internal import ArgumentParser
internal import BulwarkCore
internal import Foundation

/// Refuses an option or argument given as "" (`--out ""`, a variable that was not set): exit 64
/// before anything runs, rather than a path that means the current folder to one call and
/// nothing to the next, or a check silently skipped. Options not given (nil) are left alone.
func checkNotEmpty(_ values: KeyValuePairs<String, String?>) throws(ValidationError) {
    for case let (name, value?) in values where value.isEmpty {
        throw ValidationError("\(name) must not be empty")
    }
}

/// Refuses a day that is not a day of the calendar written `YYYY-MM-DD` (a one-digit month or day
/// is read too: `Timestamp.day`) (exit 64), as the loader
/// refuses it in a manifest's `expires:`: `2027-02-30` is not moved to March 2nd and
/// `2027-01-05xyz` is not cut to January 5th.
/// Returns the end of that day (UTC), as the loader reads it: the one reading of the option.
@discardableResult
func checkDay(_ text: String, option: String) throws(ValidationError) -> Date {
    guard let end = DesiredStateLoader.endOfDay(text) else {
        throw ValidationError("\(option): \(DesiredStateLoader.notADay(text))")
    }
    return end
}

/// Refuses a folder to create (`init DIR`, `demo --dir DIR`) that exists and is a file, or a
/// folder that is not empty (exit 64): nothing of the person's is written over.
func checkNewFolder(_ path: String) throws(ValidationError) {
    var isFolder: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue {
        throw ValidationError("\(path) exists and is not a folder: name a new folder, or an empty one")
    }
    if let contents = try? FileManager.default.contentsOfDirectory(atPath: path), !contents.isEmpty {
        throw ValidationError("\(path) exists and is not empty")
    }
}
