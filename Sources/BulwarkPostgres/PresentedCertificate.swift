internal import Foundation
internal import NIOCore
internal import NIOPosix
internal import NIOSSL
internal import NIOTLS

/// The certificate a PostgreSQL server presents to a new TLS connection: the one it loaded at its
/// start or last reload that could load one. Neither SHOW nor `pg_settings` tells it: a reload
/// that cannot load a new certificate or key ("SSL configuration was not reloaded") keeps the old
/// ones, while SHOW reports the new file, and the next start fails.
///
/// Read through a handshake of its own (postgres-nio does not show the peer's certificate): the
/// protocol's SSLRequest, then TLS without verification (the certificate is compared, not trusted),
/// and the connection closed before any password is sent.
enum PresentedCertificate {
    /// The leaf certificate's DER bytes.
    static func read(host: String, port: Int, timeout: TimeAmount = .seconds(5)) async throws -> [UInt8] {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        let context = try NIOSSLContext(configuration: configuration)
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: [UInt8].self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(SSLRequest(context: context, promise: promise))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            promise.fail(error)
            throw PostgresAdapterError("cannot connect to \(host):\(port) to read the certificate it presents: \(error)")
        }
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(PostgresAdapterError("no TLS handshake with \(host):\(port) within \(timeout.nanoseconds / 1_000_000_000)s"))
        }
        defer {
            timer.cancel()
            channel.close(promise: nil)
        }
        return try await promise.futureResult.get()
    }

    /// Sends the SSLRequest; on the server's `S`, hands the channel to TLS.
    private final class SSLRequest: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let context: NIOSSLContext
        let promise: EventLoopPromise<[UInt8]>

        init(context: NIOSSLContext, promise: EventLoopPromise<[UInt8]>) {
            (self.context, self.promise) = (context, promise)
        }

        func channelActive(context handlerContext: ChannelHandlerContext) {
            var request = handlerContext.channel.allocator.buffer(capacity: 8)
            request.writeInteger(UInt32(8))
            request.writeInteger(UInt32(80_877_103))
            handlerContext.writeAndFlush(wrapOutboundOut(request), promise: nil)
            handlerContext.fireChannelActive()
        }

        func channelRead(context handlerContext: ChannelHandlerContext, data: NIOAny) {
            var answer = unwrapInboundIn(data)
            guard answer.readInteger(as: UInt8.self) == UInt8(ascii: "S") else {
                promise.fail(PostgresAdapterError("the server offers no TLS to a new connection"))
                handlerContext.close(promise: nil)
                return
            }
            do {
                let operations = handlerContext.pipeline.syncOperations
                try operations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: nil), position: .last)
                try operations.addHandler(Handshake(promise: promise), position: .last)
                operations.removeHandler(context: handlerContext, promise: nil)
            } catch {
                promise.fail(error)
                handlerContext.close(promise: nil)
            }
        }

        func errorCaught(context handlerContext: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
            handlerContext.close(promise: nil)
        }

        func channelInactive(context handlerContext: ChannelHandlerContext) {
            promise.fail(PostgresAdapterError("the server closed the connection before answering the TLS request"))
            handlerContext.fireChannelInactive()
        }
    }

    /// Once the handshake is done, the peer's certificate.
    private final class Handshake: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<[UInt8]>

        init(promise: EventLoopPromise<[UInt8]>) { self.promise = promise }

        func userInboundEventTriggered(context handlerContext: ChannelHandlerContext, event: Any) {
            if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
                do {
                    guard let certificate = try handlerContext.pipeline.syncOperations.nioSSL_peerCertificate() else {
                        throw PostgresAdapterError("the server presented no certificate")
                    }
                    promise.succeed(try certificate.toDERBytes())
                } catch {
                    promise.fail(error)
                }
                handlerContext.close(promise: nil)
            }
            handlerContext.fireUserInboundEventTriggered(event)
        }

        func errorCaught(context handlerContext: ChannelHandlerContext, error: any Error) {
            promise.fail(PostgresAdapterError("the TLS handshake failed: \(error)"))
            handlerContext.close(promise: nil)
        }

        func channelInactive(context handlerContext: ChannelHandlerContext) {
            promise.fail(PostgresAdapterError("the server closed the connection during the TLS handshake"))
            handlerContext.fireChannelInactive()
        }
    }
}
