internal import BulwarkCore
internal import NIOCore
internal import NIOPosix
internal import PostgresNIO

/// Failures for want of a machine's resources, the server's or Bulwark's, rather than of anything
/// in the change: the server's SQLSTATE class 53 (`53300` too many connections, `53200` out of
/// memory, `53100` disk full), or a connection that could not be made for want of file
/// descriptors, memory or buffers (the core's `Shortage.codes`, read from NIO's errors here and
/// from the others by `Shortage.isShortage`). A guard that meets one has judged nothing: its
/// verdict is `GuardVerdict.unjudged`, never a block a person could approve.
enum PostgresShortage {
    static func isShortage(_ error: any Error) -> Bool {
        switch error {
        case let error as PostgresAdapterError:
            return error.shortage
        case let error as PSQLError:
            if let state = error.serverInfo?[.sqlState] { return state.hasPrefix("53") }
            return error.underlying.map(isShortage) ?? false
        case let error as IOError:
            return Shortage.codes.contains(error.errnoCode)
        case let error as NIOConnectionError:
            return error.connectionErrors.contains { isShortage($0.error) }
                || [error.dnsAError, error.dnsAAAAError].contains { $0.map(isShortage) ?? false }
        default:
            return Shortage.isShortage(error)
        }
    }
}
