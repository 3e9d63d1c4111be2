internal import ArgumentParser
internal import BulwarkCore
internal import Foundation

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
