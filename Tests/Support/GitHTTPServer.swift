internal import Foundation

/// Git's own smart HTTP server (`git http-backend`) on a loopback port, behind HTTP Basic
/// authentication with one user and token, for one test.
///
/// A small Python server does what a web server in front of git-http-backend does: checks the
/// Authorization header (401 with a challenge otherwise), decodes chunked request bodies, and
/// runs the CGI program (a `PythonStandIn`). Repositories under `root` are served as `/<path>`.
public final class GitHTTPServer {
    public static var available: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/lib/git-core/git-http-backend")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")
    }

    public let port: Int
    public let user = "bulwark-bot"
    public let token = "tok-" + UUID().uuidString
    /// Requests as `METHOD path status`, one per line.
    public var requests: [String] {
        ((try? read(logPath)) ?? "").split(separator: "\n").map(String.init)
    }

    private let server: PythonStandIn
    private let logPath: String

    private static let script = #"""
import base64, http.server, os, subprocess, sys
root, expected, log = sys.argv[1], sys.argv[2], sys.argv[3]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass
    def record(self, status):
        with open(log, "a") as f: f.write(f"{self.command} {self.path} {status}\n")
    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))
    def handle_git(self):
        data = self.body() if self.command == "POST" else b""
        if self.headers.get("Authorization") != "Basic " + expected:
            self.record(401)
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {"GIT_PROJECT_ROOT": root, "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path, "QUERY_STRING": query,
               "REQUEST_METHOD": self.command, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
               "CONTENT_LENGTH": str(len(data)), "REMOTE_USER": "bot", "REMOTE_ADDR": "127.0.0.1",
               "PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1"}
        out = subprocess.run(["/usr/lib/git-core/git-http-backend"], input=data, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.split(b"\r\n"):
            name, _, value = line.decode().partition(":")
            if name.lower() == "status": status = int(value.strip().split()[0])
            elif name: headers.append((name, value.strip()))
        self.record(status)
        self.send_response(status)
        for name, value in headers: self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
    do_GET = do_POST = handle_git

# A fleet connects at once: the default listen backlog (5) would refuse most of it.
http.server.ThreadingHTTPServer.request_queue_size = 1024
"""#

    public init(root: String) throws {
        logPath = NSTemporaryDirectory() + "/bulwark-git-http-\(UUID().uuidString).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let credentials = Data("\(user):\(token)".utf8).base64EncodedString()
        server = try PythonStandIn(Self.script, arguments: [root, credentials, logPath], name: "git HTTP server")
        port = server.port
    }

    deinit {
        // Ended first: a request it still answered could write the log again.
        server.stop()
        try? FileManager.default.removeItem(atPath: logPath)
    }

    public func url(_ path: String) -> String { "http://127.0.0.1:\(port)/\(path)" }
}
