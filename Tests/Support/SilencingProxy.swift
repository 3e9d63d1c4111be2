internal import Foundation

/// A TCP proxy on a free loopback port to `upstream` that goes silent on a connection once the
/// client sends `trigger`: that message still reaches the server (which acts on it), and from
/// then on nothing more is passed either way while both sockets stay open: the server's answer
/// is lost, as in a network that drops packets without a reset. Other connections pass as usual.
/// A python3 process of its own, stopped by its process id.
public final class SilencingProxy {
    public let port: Int
    private let process: Process

    private static let script = """
        import socket, sys, threading
        upstream, trigger = int(sys.argv[1]), sys.argv[2].encode()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        print(listener.getsockname()[1], flush=True)
        held = []
        def relay(source, sink, state, watch):
            try:
                while True:
                    data = source.recv(65536)
                    if not data or state["silent"]:
                        break
                    if watch and trigger in data:
                        state["silent"] = True
                    sink.sendall(data)
            except OSError:
                pass
            if state["silent"]:
                held.extend([source, sink])
                return
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        while True:
            client, _ = listener.accept()
            server = socket.create_connection(("127.0.0.1", upstream))
            state = {"silent": False}
            threading.Thread(target=relay, args=(client, server, state, True), daemon=True).start()
            threading.Thread(target=relay, args=(server, client, state, False), daemon=True).start()
        """

    public init(upstream: Int, trigger: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", Self.script, String(upstream), trigger]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = out.fileHandleForReading.availableData
            guard !chunk.isEmpty else { break }
            line.append(chunk)
        }
        guard let port = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw SupportError("the proxy did not start")
        }
        self.port = port
        self.process = process
    }

    deinit {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
