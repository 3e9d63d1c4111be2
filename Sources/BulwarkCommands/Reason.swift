internal import ArgumentParser
internal import Foundation

/// Checks a `--reason` a person gives: it goes into a commit message and a YAML manifest, so it
/// must be one non-empty line without control characters or line separators (U+2028, U+2029).
func checkReason(_ reason: String) throws(ValidationError) {
    guard !reason.trimmingCharacters(in: .whitespaces).isEmpty,
          !reason.unicodeScalars.contains(where: { [.control, .lineSeparator, .paragraphSeparator].contains($0.properties.generalCategory) })
    else { throw ValidationError("--reason must be one non-empty line without control characters or line separators") }
}
