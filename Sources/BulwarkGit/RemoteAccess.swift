internal import BulwarkCore
internal import CLibGit2
internal import CSSHInit
internal import Foundation

/// How Bulwark authenticates to a remote and decides whether to trust an SSH server.
///
/// Local paths and `file://` need none of it. Secrets live only in memory: `description` never
/// shows them, and nothing here is written to the repository's configuration.
public struct RemoteAccess: Sendable, CustomStringConvertible {
    /// An SSH private key file (OpenSSH format; ed25519 or ECDSA: Debian 12's libssh2 cannot
    /// sign with RSA-SHA2, which current servers require), with its public key next to it as
    /// `<path>.pub` when that file exists.
    public struct SSHKey: Sendable {
        public init(privateKey: String, publicKey: String? = nil, passphrase: String? = nil) {
            self.privateKey = privateKey
            self.publicKey = publicKey
            self.passphrase = passphrase
        }

        public var privateKey: String
        public var publicKey: String?
        public var passphrase: String?
    }

    /// Whether an SSH server's host key is trusted: given the host name libgit2 connected to and
    /// the key in SSH wire format, nil when trusted, otherwise why not.
    public typealias HostKeyCheck = @Sendable (_ host: String, _ key: [UInt8]) -> String?

    public init(username: String? = nil, password: String? = nil, sshKey: SSHKey? = nil, useAgent: Bool = false,
                hostKeyCheck: HostKeyCheck? = nil) {
        self.username = username
        self.password = password
        self.sshKey = sshKey
        self.useAgent = useAgent
        self.hostKeyCheck = hostKeyCheck
    }

    /// The user name for HTTPS, and for SSH when the URL names none.
    public var username: String?
    /// An HTTPS password or access token.
    public var password: String?
    public var sshKey: SSHKey?
    /// Ask the ssh-agent at `$SSH_AUTH_SOCK` when no key file is given.
    public var useAgent: Bool
    /// Without one, every SSH server is refused: an unverified host could serve any policy.
    public var hostKeyCheck: HostKeyCheck?

    public var description: String {
        var parts: [String] = []
        if let username { parts.append("user \(username)") }
        if password != nil { parts.append("password <redacted>") }
        if let sshKey { parts.append("ssh key \(sshKey.privateKey)") }
        if useAgent { parts.append("ssh-agent") }
        parts.append(hostKeyCheck == nil ? "no SSH host keys trusted" : "SSH host keys checked")
        return "RemoteAccess(" + parts.joined(separator: ", ") + ")"
    }
}

/// What one remote operation's libgit2 callbacks need and learn; lives for that operation only,
/// on its thread.
final class RemoteCallbacks {
    let access: RemoteAccess
    var rejections: [PushRejection] = []
    /// For a compare-and-swap push: the value the remote reference must have (zero: absent),
    /// and why the push was not started when it had another.
    var expectedOld = git_oid()
    var moved: String?
    /// Why the operation was stopped by a callback, in words better than libgit2's.
    var failure: String?
    private var credentialAttempts = 0

    init(access: RemoteAccess) {
        self.access = access
    }

    /// Sets the credential and certificate callbacks in `callbacks`, with this object as
    /// their payload; call the remote operation inside `run`, which keeps this object alive.
    func install(_ callbacks: inout git_remote_callbacks) {
        callbacks.payload = Unmanaged.passUnretained(self).toOpaque()
        callbacks.credentials = { out, url, usernameFromURL, allowed, payload in
            guard let out, let payload else { return GIT_PASSTHROUGH.rawValue }
            let box = Unmanaged<RemoteCallbacks>.fromOpaque(payload).takeUnretainedValue()
            return box.credential(out, url: url.map { String(cString: $0) } ?? "",
                                  usernameFromURL: usernameFromURL.map { String(cString: $0) }, allowed: allowed)
        }
        callbacks.certificate_check = { cert, valid, host, payload in
            guard let cert, let payload else { return GIT_PASSTHROUGH.rawValue }
            let box = Unmanaged<RemoteCallbacks>.fromOpaque(payload).takeUnretainedValue()
            return box.certificate(cert, host: host.map { String(cString: $0) } ?? "")
        }
    }

    /// Runs the remote operation. A libgit2 error caused by a callback is reported with the
    /// callback's reason, which says what to do about it.
    /// An operation whose connection the watchdog closed for silence (GitStream.c) says so: under
    /// TLS or ssh the error libgit2 reports is only the layer above's ("Failed getting banner").
    func run<R>(_ body: () throws(GitError) -> R) throws(GitError) -> R {
        let closedBefore = bulwark_git_idle_shutdowns()
        do {
            return try withExtendedLifetime(self) { () throws(GitError) -> R in try body() }
        } catch {
            if failure == nil, bulwark_git_idle_shutdowns() > closedBefore, !error.message.contains("BULWARK_ORIGIN_IDLE_TIMEOUT") {
                throw GitError(function: error.function, code: error.code, errorClass: error.errorClass,
                               message: "the origin sent and took nothing for \(LibGit2.originIdleTimeout) s, so the connection was "
                                   + "closed (BULWARK_ORIGIN_IDLE_TIMEOUT): \(error.message)")
            }
            guard let failure else { throw error }
            throw GitError(function: error.function, code: error.code, errorClass: error.errorClass, message: failure)
        }
    }

    private func credential(_ out: UnsafeMutablePointer<UnsafeMutablePointer<git_credential>?>, url: String,
                            usernameFromURL: String?, allowed: UInt32) -> Int32 {
        // libgit2 asks again after every refusal; twice is a mistake, not a retry.
        credentialAttempts += 1
        guard credentialAttempts <= 2 else {
            failure = "authentication to \(redactedURL(url)) failed: the server refused the credentials"
            return GIT_EUSER.rawValue
        }
        let user = usernameFromURL ?? access.username ?? "git"
        if allowed & GIT_CREDENTIAL_SSH_KEY.rawValue != 0 {
            if let key = access.sshKey {
                let publicKey = key.publicKey ?? (FileManager.default.fileExists(atPath: key.privateKey + ".pub") ? key.privateKey + ".pub" : nil)
                return git_credential_ssh_key_new(out, user, publicKey, key.privateKey, key.passphrase)
            }
            if access.useAgent { return git_credential_ssh_key_from_agent(out, user) }
        }
        if allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT.rawValue != 0, let password = access.password {
            guard !RemoteAccess.sendsInClearText(to: url) else {
                failure = "\(redactedURL(url)) asks for the git password over plain http, which would send it in clear text "
                    + "to another machine; use https (plain http is for this machine only)"
                return GIT_EUSER.rawValue
            }
            return git_credential_userpass_plaintext_new(out, access.username ?? usernameFromURL ?? "x-access-token", password)
        }
        if allowed & GIT_CREDENTIAL_USERNAME.rawValue != 0 {
            return git_credential_username_new(out, user)
        }
        let ssh = allowed & GIT_CREDENTIAL_SSH_KEY.rawValue != 0
        failure = "\(redactedURL(url)) asks for credentials and none were given"
            + (ssh ? " (pass --ssh-key, or --ssh-agent)" : " (pass --git-password-env or --git-password-file)")
        return GIT_EUSER.rawValue
    }

    private func certificate(_ cert: UnsafeMutablePointer<git_cert>, host: String) -> Int32 {
        // TLS: libgit2 has already checked the chain and the name against the system's CAs.
        guard cert.pointee.cert_type == GIT_CERT_HOSTKEY_LIBSSH2 else { return GIT_PASSTHROUGH.rawValue }
        guard let check = access.hostKeyCheck else {
            failure = "the SSH host key of \(host) cannot be checked: pass --ssh-known-hosts with its key (ssh-keyscan prints it)"
            return GIT_ECERTIFICATE.rawValue
        }
        let hostkey = UnsafeMutableRawPointer(cert).assumingMemoryBound(to: git_cert_hostkey.self).pointee
        guard hostkey.type.rawValue & GIT_CERT_SSH_RAW.rawValue != 0, let raw = hostkey.hostkey else {
            failure = "the SSH server \(host) did not give its host key"
            return GIT_ECERTIFICATE.rawValue
        }
        let key = [UInt8](UnsafeRawBufferPointer(start: raw, count: hostkey.hostkey_len))
        if let problem = check(host, key) {
            failure = problem
            return GIT_ECERTIFICATE.rawValue
        }
        return 0
    }
}

extension RemoteAccess {
    /// Whether a password given to `url` would travel in clear text to another machine: plain
    /// http to a host that is not a loopback name or address. (libgit2 asks for the credential
    /// with the remote's URL, not one it was redirected to: plain http remotes follow no
    /// redirect, and libgit2 refuses one from https to http.)
    public static func sendsInClearText(to url: String) -> Bool {
        guard url.lowercased().hasPrefix("http://") else { return false }
        return !Loopback.isHost(of: url)
    }
}
