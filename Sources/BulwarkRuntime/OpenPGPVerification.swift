import BulwarkCore
package import BulwarkGit
import Foundation

extension SourceVerification {
    /// The `gpgv` on the PATH, else the usual place.
    package static var gpgv: String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for folder in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(folder)/gpgv") {
            return "\(folder)/gpgv"
        }
        return "/usr/bin/gpgv"
    }

    /// The signer of an OpenPGP-signed commit, checked by `gpgv` against `keyring` alone (no
    /// trust database, no user's GnuPG home): the email of the key's user id in the keyring
    /// (else its fingerprint), never what the commit claims. A signature by an expired or revoked
    /// key, or an expired signature, is refused: `gpgv` must report GOODSIG and VALIDSIG. With
    /// `fingerprint`, the signing key's or its primary key's full fingerprint must be that one
    /// (hex, case and spaces aside): a user id is whatever its holder wrote, so never that.
    package static func verifyOpenPGP(_ signed: CommitSignature, commit: ObjectID, keyring: String, folder: String,
                                      fingerprint required: String? = nil, byFingerprint: Bool = false) throws -> Result<String, Untrusted> {
        let signatureFile = folder + "/commit.asc"
        let dataFile = folder + "/commit.data"
        for (path, bytes) in [(signatureFile, signed.signature), (dataFile, signed.signedData)] {
            unlink(path)
            guard FileManager.default.createFile(atPath: path, contents: Data(bytes), attributes: [.posixPermissions: 0o600]) else {
                throw CommandError("cannot write \(path) to verify commit \(commit.short)")
            }
        }
        let absolute = keyring.hasPrefix("/") ? keyring : FileManager.default.currentDirectoryPath + "/" + keyring
        // A private, empty home: gpgv reads nothing of the user's GnuPG configuration.
        let home = folder + "/gnupg"
        try? FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let result = try runTool(gpgv, ["--homedir", home, "--keyring", absolute, "--status-fd", "1", signatureFile, dataFile],
                                 folder: folder)
        let status = result.output.split(whereSeparator: \.isNewline).compactMap { line -> [Substring]? in
            guard line.hasPrefix("[GNUPG:] ") else { return nil }
            return line.dropFirst(9).split(separator: " ")
        }
        func has(_ keyword: String) -> [Substring]? { status.first { $0.first.map(String.init) == keyword } }
        for (keyword, reason) in [("EXPKEYSIG", "the key that made it has expired"), ("REVKEYSIG", "the key that made it was revoked"),
                                  ("EXPSIG", "the signature has expired"), ("BADSIG", "the signature does not match the commit"),
                                  ("NO_PUBKEY", "it is signed by a key that is not in the trusted keyring \(keyring)")] {
            if has(keyword) != nil { return .failure(Untrusted(description: reason)) }
        }
        guard result.status == 0, let good = has("GOODSIG"), let valid = has("VALIDSIG"), valid.count > 1 else {
            let reason = result.errors.split(whereSeparator: \.isNewline).last.map(String.init) ?? "exit \(result.status)"
            return .failure(Untrusted(description: "the OpenPGP signature does not verify: \(quotedForMessage(reason, limit: 200))"))
        }
        if let required {
            // VALIDSIG <signing key fingerprint> … <primary key fingerprint> (its tenth field).
            let wanted = required.filter { !$0.isWhitespace }.uppercased()
            let keys = [valid[1]] + (valid.count > 10 ? [valid[10]] : [])
            guard wanted.count >= 40, keys.contains(where: { $0.uppercased() == wanted }) else {
                return .failure(Untrusted(description: "it is signed by the key \(valid[1]), not by the proposer's key "
                                          + "'\(quotedForMessage(required))' (give its full fingerprint)"))
            }
            return .success(wanted)
        }
        if byFingerprint { return .success(String(valid.count > 10 ? valid[10] : valid[1]).uppercased()) }
        let userID = good.dropFirst(2).joined(separator: " ")
        guard let email = Self.email(in: userID) else { return .success(String(valid[1])) }
        // A user id is whatever its holder wrote: `Mallory <alice@example.org>` on Mallory's own
        // key would be named alice, and pass alice's trust policy and approvals. The address
        // names the signer only when no other key of the keyring claims it and the signing key
        // claims no other; else the signer is the primary key's fingerprint, which no one chooses.
        let primary = String(valid.count > 10 ? valid[10] : valid[1]).uppercased()
        guard let claims = userIDEmails(keyring: absolute) else { return .success(primary) }
        let others = claims.filter { $0.key != primary && $0.value.contains(email.lowercased()) }.count
        if others > 0 {
            return .failure(Untrusted(description: "it is signed by the key \(primary), whose user id names \(email), and "
                                      + "\(others) other key(s) of the trusted keyring \(keyring) name it too: the signer cannot be "
                                      + "told (keep one key per address in the keyring)"))
        }
        return .success((claims[primary] ?? [email]).count > 1 ? primary : email)
    }

    /// The e-mail address of a user id (`Name <address>`), nil when it has none.
    static func email(in userID: String) -> String? {
        guard let open = userID.lastIndex(of: "<"), let close = userID.lastIndex(of: ">"), open < close else { return nil }
        let address = userID[userID.index(after: open)..<close]
        return address.isEmpty ? nil : String(address)
    }

    /// The e-mail addresses each primary key's user ids name in `keyring`, by primary key
    /// fingerprint, read in-process (`OpenPGPKeyring`): `gpgv`, all a host may have, lists
    /// nothing, and with `gpg` asked instead every signer there was named by fingerprint, so no
    /// approval or trust policy naming an address ever matched. Nil when the file cannot be read
    /// as a keyring.
    static func userIDEmails(keyring: String) -> [String: Set<String>]? {
        guard let parsed = OpenPGPKeyring.read(keyring) else { return nil }
        var claims: [String: Set<String>] = [:]
        for key in parsed.keys {
            claims[key.fingerprint, default: []].formUnion(key.userIDs.compactMap { email(in: $0)?.lowercased() })
        }
        return claims
    }
}
