internal import Foundation
internal import NIOCore
internal import NIOPosix
internal import PostgresNIO

/// Failures for want of a machine's resources, the server's or Bulwark's, rather than of anything
/// in the change: the server's SQLSTATE class 53 (`53300` too many connections, `53200` out of
/// memory, `53100` disk full), or a connection that could not be made for want of file
/// descriptors or memory (`EMFILE`, `ENFILE`, `ENOMEM`). A guard that meets one has judged
/// nothing: its verdict is `GuardVerdict.unjudged`, never a block a person could approve.
enum PostgresShortage {
    static let codes: Set<CInt> = [EMFILE, ENFILE, ENOMEM]

    static func isShortage(_ error: any Error) -> Bool {
        switch error {
        case let error as PostgresAdapterError:
            return error.shortage
        case let error as PSQLError:
            if let state = error.serverInfo?[.sqlState] { return state.hasPrefix("53") }
            return error.underlying.map(isShortage) ?? false
        case let error as IOError:
            return codes.contains(error.errnoCode)
        case let error as NIOConnectionError:
            return error.connectionErrors.contains { isShortage($0.error) }
                || [error.dnsAError, error.dnsAAAAError].contains { $0.map(isShortage) ?? false }
        case let error as POSIXError:
            return codes.contains(error.code.rawValue)
        default:
            let bridged = error as NSError
            return bridged.domain == NSPOSIXErrorDomain && codes.contains(CInt(truncatingIfNeeded: bridged.code))
        }
    }
}
