internal import CLibGit2
internal import Foundation

extension Repository {
    /// Loose object files that are not one complete zlib stream (truncated, overwritten), as
    /// paths. Checked here because libgit2 1.5 can spin forever inflating a truncated loose
    /// object instead of reporting it.
    public func damagedLooseObjects() -> [String] {
        let objects = path + (path.hasSuffix("/") ? "" : "/") + "objects"
        let fm = FileManager.default
        guard let folders = try? fm.contentsOfDirectory(atPath: objects) else { return [] }
        var damaged: [String] = []
        for folder in folders where folder.utf8.count == 2 && folder.allSatisfy(\.isHexDigit) {
            guard let names = try? fm.contentsOfDirectory(atPath: objects + "/" + folder) else { continue }
            for name in names where name.utf8.count == 38 && name.allSatisfy(\.isHexDigit) {
                let file = objects + "/" + folder + "/" + name
                if !Self.isCompleteZlibStream(file) { damaged.append(file) }
            }
        }
        return damaged.sorted()
    }

    /// Whether `file` holds one zlib stream that inflates to its end (output discarded).
    static func isCompleteZlibStream(_ file: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: file) else { return false }
        defer { try? handle.close() }
        var stream = z_stream()
        guard inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return false }
        defer { inflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: 65_536)
        while true {
            guard let chunk = try? handle.read(upToCount: 65_536), !chunk.isEmpty else { return false }
            var input = [UInt8](chunk)
            let inputCount = input.count
            let status: Int32 = input.withUnsafeMutableBufferPointer { inBuffer in
                stream.next_in = inBuffer.baseAddress
                stream.avail_in = UInt32(inputCount)
                var code = Z_OK
                while stream.avail_in > 0 || code == Z_OK {
                    code = output.withUnsafeMutableBufferPointer { outBuffer in
                        stream.next_out = outBuffer.baseAddress
                        stream.avail_out = UInt32(outBuffer.count)
                        return inflate(&stream, Z_NO_FLUSH)
                    }
                    if code == Z_STREAM_END || (code != Z_OK && code != Z_BUF_ERROR) { return code }
                    if code == Z_BUF_ERROR || (stream.avail_in == 0 && stream.avail_out > 0) { return Z_OK }
                }
                return code
            }
            if status == Z_STREAM_END { return true }
            guard status == Z_OK || status == Z_BUF_ERROR else { return false }
        }
    }
}
