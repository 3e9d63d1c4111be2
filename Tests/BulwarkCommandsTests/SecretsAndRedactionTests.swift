@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// Secret files only from the secrets folder; credentials in URLs never shown.
@Suite struct SecretsAndRedactionTests {
    // MARK: - Secret files

    @Test func secretFilesAreReadOnlyFromTheSecretsFolder() async throws {
        try await withTemporaryDirectory { dir in
            let secrets = dir + "/secrets"
            try write(secrets + "/token", "s3cret\n", mode: 0o600)
            try write(secrets + "/..data/hook", "inside\n", mode: 0o600)
            try FileManager.default.createSymbolicLink(atPath: secrets + "/hook", withDestinationPath: "..data/hook")
            try write(dir + "/outside", "stolen\n", mode: 0o600)
            try FileManager.default.createSymbolicLink(atPath: secrets + "/escape", withDestinationPath: dir + "/outside")
            try FileManager.default.createSymbolicLink(atPath: secrets + "/shadow", withDestinationPath: "/etc/shadow")
            let env = ["BULWARK_SECRETS_DIR": secrets]

            // Inside: absolute, relative to the folder, and a link that stays inside (as Kubernetes mounts them).
            #expect(try NotifierConfig.Secret.file(secrets + "/token").value(environment: env) == "s3cret")
            #expect(try NotifierConfig.Secret.file("token").value(environment: env) == "s3cret")
            #expect(try NotifierConfig.Secret.file("hook").value(environment: env) == "inside")

            // Outside: a plain path, `..`, links that lead out, and the default folder when none is set.
            for path in [dir + "/outside", secrets + "/../outside", "../outside", secrets + "/escape", "shadow", "/etc/shadow"] {
                #expect {
                    _ = try NotifierConfig.Secret.file(path).value(environment: env)
                } throws: { error in
                    "\(error)".contains("is not under the secrets folder (\(secrets))")
                }
            }
            #expect(throws: CommandError.self) { try NotifierConfig.Secret.file(secrets + "/token").value(environment: [:]) }
            // systemd's credentials folder is allowed as well.
            let credentials = ["BULWARK_SECRETS_DIR": dir + "/none", "CREDENTIALS_DIRECTORY": secrets]
            #expect(try NotifierConfig.Secret.file(secrets + "/token").value(environment: credentials) == "s3cret")
            // A folder is not a secret.
            try FileManager.default.createDirectory(atPath: secrets + "/folder", withIntermediateDirectories: true)
            #expect(throws: CommandError.self) { try NotifierConfig.Secret.file("folder").value(environment: env) }
        }
    }

    @Test func aGitPasswordFileOutsideTheSecretsFolderIsRefusedBeforeAnythingIsWritten() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try write(dir + "/token", "t0ken\n", mode: 0o600)
            try FileManager.default.createDirectory(atPath: dir + "/secrets", withIntermediateDirectories: true)
            let refused = try s.run("plan", "--git-password-file", dir + "/token", "--secrets-dir", dir + "/secrets")
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("secret file \(dir)/token is not under the secrets folder (\(dir)/secrets)"), "\(refused.stderr)")
            #expect(!refused.stderr.contains("t0ken"))
            #expect(!FileManager.default.fileExists(atPath: s.state), "nothing was written")
            // The same file in the secrets folder is taken (a local repository ignores it).
            try write(dir + "/secrets/token", "t0ken\n", mode: 0o600)
            let taken = try s.run("plan", "--git-password-file", dir + "/secrets/token", "--secrets-dir", dir + "/secrets")
            #expect(taken.status == 2, "\(taken.stderr)")
        }
    }

    @Test func notifierSecretFilesComeFromTheExportedSecretsFolder() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let server = try TestHTTPServer()
            defer { server.stop() }
            let secrets = dir + "/secrets"
            try write(secrets + "/hook-url", server.url + "\n", mode: 0o600)
            try write(secrets + "/hook-secret", "sign-me\n", mode: 0o600)
            try write(dir + "/stolen", "not-a-secret-of-yours\n", mode: 0o600)
            let controller = try read(s.policy + "/controllers/host-hardening.yaml").replacingOccurrences(of: "mode: enforce", with: "mode: approve")
            // One notifier reads its files relative to the secrets folder; one points outside it.
            try s.commitPolicy("controllers/host-hardening.yaml", controller + """
                ---
                apiVersion: bulwark/v1
                kind: Notifier
                metadata: {name: inside}
                spec: {urlFile: hook-url, secretFile: hook-secret, on: [held]}
                ---
                apiVersion: bulwark/v1
                kind: Notifier
                metadata: {name: outside}
                spec: {urlFile: hook-url, secretFile: \(dir)/stolen, on: [held]}

                """)
            let apply = try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state, "--notify-timeout", "0",
                                                          "--secrets-dir", secrets])
            #expect(apply.status == 0, "\(apply.stderr)")
            let held = try s.trailers("Bulwark-Decision").filter { $0 == "held" }.count
            #expect(held > 0)
            #expect(server.requests.count == held, "only the notifier inside the folder delivered")
            #expect(server.requests.allSatisfy { $0.headers["x-bulwark-signature-256"] != nil })
            #expect(apply.stderr.contains("secret file \(dir)/stolen is not under the secrets folder (\(secrets))"), "\(apply.stderr)")
            #expect(!apply.stderr.contains("not-a-secret-of-yours"))
        }
    }

    @Test func aFailingNotifierURLIsShownWithoutItsToken() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let controller = try read(s.policy + "/controllers/host-hardening.yaml").replacingOccurrences(of: "mode: enforce", with: "mode: approve")
            try s.commitPolicy("controllers/host-hardening.yaml", controller + """
                ---
                apiVersion: bulwark/v1
                kind: Notifier
                metadata: {name: chat}
                spec: {url: "http://user:pa55word@127.0.0.1:1/hook?token=T0KEN-123&channel=sec", on: [held]}

                """)
            let apply = try s.run("apply", "--notify-timeout", "0")
            #expect(apply.status == 0, "\(apply.stderr)")
            #expect(apply.stderr.contains("kept in"), "\(apply.stderr)")
            for secret in ["T0KEN-123", "pa55word"] {
                #expect(!apply.stderr.contains(secret) && !apply.stdout.contains(secret), "\(apply.stderr)")
            }
        }
    }

    // MARK: - Redaction

    @Test func everyURLFormHasItsCredentialsRedacted() {
        let cases: [(String, String)] = [
            ("https://user:pass@example.org/repo.git", "https://user:<redacted>@example.org/repo.git"),
            ("https://user:pa/ss@example.org/repo.git", "https://user:<redacted>@example.org/repo.git"),
            ("https://bot:ghp_secret@example.org/a@b.git", "https://bot:<redacted>@example.org/a@b.git"),
            ("https://user@corp.example:pw@example.org/x", "https://user@corp.example:<redacted>@example.org/x"),
            ("https://bot@example.org/p.git", "https://bot@example.org/p.git"),
            ("https://example.org:8443/users/@me", "https://example.org:8443/users/@me"),
            ("https://x-access-token:ghp_abc@github.com/o/r", "https://x-access-token:<redacted>@github.com/o/r"),
            ("https://ghp_abcdef@github.com/o/r", "https://<redacted>@github.com/o/r"),
            ("https://hooks.example.org/in?token=abc123", "https://hooks.example.org/in?token=<redacted>"),
            ("https://h/x?a=1&access_token=abc&b=2", "https://h/x?a=1&access_token=<redacted>&b=2"),
            ("https://acct.blob.core.windows.net/c?sv=2020&sig=abc%2Fdef&se=x", "https://acct.blob.core.windows.net/c?sv=2020&sig=<redacted>&se=x"),
            ("https://s3.amazonaws.com/b/k?X-Amz-Credential=AKIA&X-Amz-Signature=ff", "https://s3.amazonaws.com/b/k?X-Amz-Credential=<redacted>&X-Amz-Signature=<redacted>"),
            ("https://h/cb#access_token=abc&state=1", "https://h/cb#access_token=<redacted>&state=1"),
            ("https://h/x?apiKey=abc&webhookSecret=s", "https://h/x?apiKey=<redacted>&webhookSecret=<redacted>"),
            ("https://u:p@h/x?token=t", "https://u:<redacted>@h/x?token=<redacted>"),
            // A raw '#' or '?' in a password (what a person pastes unescaped) is hidden too.
            ("https://bot:s3cr#et@127.0.0.1:1/x.git", "https://bot:<redacted>@127.0.0.1:1/x.git"),
            ("https://bot:s3cr?et@h/x.git", "https://bot:<redacted>@h/x.git"),
            // A raw '@' in a password: the userinfo ends at the last '@' before the path (it
            // stopped at the first, the rest of the password shown).
            ("https://eve:TOK@SECRET5@127.0.0.1:1/x.git", "https://eve:<redacted>@127.0.0.1:1/x.git"),
            ("https://eve:a@b@c@h/x@y.git?q=1", "https://eve:<redacted>@h/x@y.git?q=1"),
            ("https://ghp_abcdef@SECRET5@github.com/o/r", "https://<redacted>@github.com/o/r"),
            // Nothing to hide: unchanged.
            ("https://example.org/repo.git", "https://example.org/repo.git"),
            ("https://bot@example.org/a@b.git", "https://bot@example.org/a@b.git"),
            ("https://example.org/x?page=2", "https://example.org/x?page=2"),
            ("https://example.org:443?q=a@b", "https://example.org:443?q=a@b"),
            ("ssh://git@example.org:2222/repo.git", "ssh://git@example.org:2222/repo.git"),
            ("ssh://git@example.org:2222/a@b.git", "ssh://git@example.org:2222/a@b.git"),
            ("git@example.org:repo.git", "git@example.org:repo.git"),
            ("/srv/git/policy.git", "/srv/git/policy.git"),
        ]
        for (url, expected) in cases {
            #expect(Redaction.url(url) == expected, "\(url)")
            #expect(redactedURL(url) == expected)
        }
    }

    /// A password with a raw '@' in `--repo`: the part after its first '@' was printed.
    @Test func aPasswordWithAnAtSignIsNotPrinted() async throws {
        try await withTemporaryDirectory { dir in
            let result = try bulwark(["plan", "--repo", "https://eve:TOK@SECRET5@127.0.0.1:1/x.git", "--state-dir", dir + "/state"])
            #expect(result.status != 0 && result.status != 2, "\(result.stderr)")
            #expect(result.stderr.contains("https://eve:<redacted>@127.0.0.1:1/x.git"), "\(result.stderr)")
            #expect(!result.stderr.contains("SECRET5") && !result.stdout.contains("SECRET5"), "\(result.stderr)")
        }
    }

    /// The repository a URL names, whatever credentials it carries: a token rotated in `--repo`
    /// is the same origin and the same default state directory; another host, port or path is not.
    @Test func aURLWithoutItsCredentialsNamesTheSameRepository() {
        let cases: [(String, String)] = [
            ("http://x-access-token:GOOD@127.0.0.1:8080/origin.git", "http://127.0.0.1:8080/origin.git"),
            ("https://eve:TOK@SECRET5@h/x.git", "https://h/x.git"),
            ("https://ghp_abcdef@github.com/o/r", "https://github.com/o/r"),
            ("https://bot@example.org/a@b.git?x=1", "https://example.org/a@b.git?x=1"),
            ("https://example.org:8443/users/@me", "https://example.org:8443/users/@me"),
            ("ssh://git@example.org:2222/repo.git", "ssh://example.org:2222/repo.git"),
            ("file:///srv/git/policy.git", "file:///srv/git/policy.git"),
            ("git@example.org:repo.git", "git@example.org:repo.git"),
            ("/srv/git/policy.git", "/srv/git/policy.git"),
        ]
        for (url, expected) in cases { #expect(Redaction.withoutUserinfo(url) == expected, "\(url)") }
        let good = "http://x-access-token:GOOD@127.0.0.1:8080/origin.git"
        for same in ["http://x-access-token:NEW@127.0.0.1:8080/origin.git", "http://127.0.0.1:8080/origin.git", "http://bot@127.0.0.1:8080/origin.git"] {
            #expect(PolicyRepository.sameRepository(good, same), "\(same)")
            #expect(RepositoryOptions.defaultStateDirectory(url: good, environment: ["HOME": "/h"], isRoot: false)
                    == RepositoryOptions.defaultStateDirectory(url: same, environment: ["HOME": "/h"], isRoot: false), "\(same)")
        }
        for other in ["http://x-access-token:GOOD@127.0.0.1:8081/origin.git", "http://x-access-token:GOOD@127.0.0.1:8080/other.git",
                      "https://x-access-token:GOOD@127.0.0.1:8080/origin.git", "/srv/origin.git"] {
            #expect(!PolicyRepository.sameRepository(good, other), "\(other)")
            #expect(RepositoryOptions.defaultStateDirectory(url: good, environment: ["HOME": "/h"], isRoot: false)
                    != RepositoryOptions.defaultStateDirectory(url: other, environment: ["HOME": "/h"], isRoot: false), "\(other)")
        }
    }

    /// Free text a scanner or a target wrote (a finding's evidence in a change not proposed):
    /// an `Authorization` header's credential after its scheme, a query's secret outside a URL,
    /// and a private key block removed whole, the words around each still readable.
    @Test func headerCredentialsBareQueriesAndKeyBlocksInTextAreRedacted() {
        let cases: [(String, String)] = [
            ("got 'Authorization: Basic dXNlcjpwYXNz'", "got 'Authorization: Basic <redacted>'"),
            ("Proxy-Authorization: Bearer abc.def and more", "Proxy-Authorization: Bearer <redacted> and more"),
            (#"{"Authorization": "token s3cr3t"}"#, #"{"Authorization": "token <redacted>"}"#),
            ("link ?sv=1&sig=abc%2Fdef&se=2 ok", "link ?sv=1&sig=<redacted>&se=2 ok"),
            ("?sig=abc then Authorization: Basic dXNlcjpwYXNz", "?sig=<redacted> then Authorization: Basic <redacted>"),
            ("a -----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\nAAAA\n-----END OPENSSH PRIVATE KEY----- b", "a <redacted> b"),
            ("cut -----BEGIN RSA PRIVATE KEY----- MIIEow", "cut <redacted>"),
            // Nothing secret: unchanged.
            ("-----BEGIN CERTIFICATE----- MIIB -----END CERTIFICATE-----", "-----BEGIN CERTIFICATE----- MIIB -----END CERTIFICATE-----"),
            ("basic auth failed for ?page=2", "basic auth failed for ?page=2"),
            ("expected a single word or number, got 'ninety days'", "expected a single word or number, got 'ninety days'"),
        ]
        for (text, expected) in cases { #expect(Redaction.words(in: text) == expected, "\(text)") }
    }

    /// A scanner's evidence the redaction missed: a password with no blank after its colon, a
    /// passphrase, keys of something (`encryption_key`, `ssh_key`, JSON's `"client_key"`,
    /// `signingKey`), `PGPASS`, a PIN, cookie headers and `mysql -p…`; two of them reached git in
    /// a proposal's commit. Each value is redacted and what names it stays; ordinary evidence
    /// (`PASS_MAX_DAYS 99999`, `PermitRootLogin yes`, a bare `key: name`, words that only hold
    /// those letters) reads as it was.
    @Test func evidenceSecretsUnderEverySpellingAreRedactedAndOrdinaryEvidenceStays() {
        let cases: [(String, String)] = [
            ("password:NOSPACE0123 found", "password:<redacted> found"),
            ("passphrase=PASSPHRASE0123", "passphrase=<redacted>"),
            ("encryption_key: ENCKEY0123", "encryption_key: <redacted>"),
            ("Cookie: session=COOKIE0123; theme=COOKIE4567", "Cookie: session=<redacted>; theme=<redacted>"),
            ("Set-Cookie: sid=SETCOOKIE0123; Path=/ then PASS_MAX_DAYS 99999", "Set-Cookie: sid=<redacted>; Path=<redacted> then PASS_MAX_DAYS 99999"),
            ("ran /usr/bin/mysql -uroot -pMYSQL0123 -h db", "ran /usr/bin/mysql -uroot -p<redacted> -h db"),
            ("sshpass -p SSHPASS0123 ssh host", "sshpass -p <redacted> ssh host"),
            ("PGPASS=PGPASS0123", "PGPASS=<redacted>"),
            (#"{"client_key": "CLIENTKEY0123", "user": "bob"}"#, #"{"client_key": "<redacted>", "user": "bob"}"#),
            ("ssh_key=SSHKEY0123", "ssh_key=<redacted>"),
            ("signingKey: SIGNKEY0123 userPin=PIN0123 APIKey:APIKEY0123", "signingKey: <redacted> userPin=<redacted> APIKey:<redacted>"),
            ("Authorization:Basic QmFzaWMxMjM0", "Authorization:Basic <redacted>"),
        ]
        for (text, expected) in cases { #expect(Redaction.words(in: text) == expected, "\(text)") }
        for plain in ["PASS_MAX_DAYS 99999", "PermitRootLogin yes", "PASS_MAX_DAYS=99999 PASS_MIN_DAYS=0", "key: name", "code: 42",
                      "bypass=on spin=3 monkey=2 keyboard: us passthrough: yes", "mysql -u root -p -P 3306 shop", "find / -perm -4000 -print",
                      "time:12:00 port:22 session: 42", "public key ssh-ed25519 is listed", "Cookie policy: strict"] {
            #expect(Redaction.words(in: plain) == plain, "\(plain)")
        }
    }

    @Test func urlsInsideMessagesAreRedacted() {
        let message = #"slack 01ABC: Error Domain=NSURLErrorDomain Code=-1004 "Could not connect" UserInfo={NSErrorFailingURLStringKey=https://hooks.example.org/in?token=abc123, url: 'https://u:pw/x@h/p'}"#
        let redacted = Redaction.urls(in: message)
        #expect(!redacted.contains("abc123"))
        #expect(!redacted.contains("pw/x"))
        #expect(redacted.contains("https://hooks.example.org/in?token=<redacted>"))
        #expect(redacted.contains("https://u:<redacted>@h/p"))
        #expect(Redaction.urls(in: "no url here") == "no url here")
        #expect(Redaction.urls(in: "fetch https://example.org/r.git failed") == "fetch https://example.org/r.git failed")
    }

    /// A token in brackets or after punctuation (`(sk-proj…)`, `[ghp_…]`, `see:AKIA…;`) reached
    /// the audit branch in clear from a managed file (outside review): the word split only on
    /// blanks, quotes, `,` and `=`. Names such as `(sk-learn-pipeline-v2)` stay readable.
    @Test func aTokenInBracketsOrAfterPunctuationIsRedacted() {
        let token = "sk-proj0123456789abcdefghijklmnop"
        for text in ["note: \"(\(token))\"", "[\(token)]", "see:\(token);", "{\(token)}", "<ghp_0123456789abcdefghijABCDEFGHIJ>",
                     "keys (AKIAIOSFODNN7EXAMPLE)", "see AKIAIOSFODNN7EXAMPLE.", "token \(token).", "at /\(token)/x", "u@\(token)#",
                     "~\(token)+"] {
            #expect(Redaction.looksLikeCredential(text), "\(text)")
            let words = Redaction.words(in: text)
            #expect(!words.contains(token) && !words.contains("ghp_0123") && !words.contains("AKIAIOSFODNN7EXAMPLE"), "\(words)")
        }
        for text in ["(sk-learn-pipeline-v2)", "[model: gpt-4o]", "see:docs;", "version 1.2.3.", "/usr/lib/x86_64-linux-gnu/libc.so.6"] {
            #expect(!Redaction.looksLikeCredential(text), "\(text)")
            #expect(Redaction.words(in: text) == text)
        }
    }

    /// The git password went to whatever URL asked for it, plain http included: a policy
    /// repository at http://git.example.org (or an https one redirecting there) got it in clear
    /// text. It is now given over plain http only to this machine (the HTTP origin tests in
    /// SSHRemoteTests push with it over loopback).
    @Test func theGitPasswordTravelsOverPlainHTTPOnlyToThisMachine() {
        for url in ["http://git.example.org/policy.git", "HTTP://Git.Example.org/p.git", "http://10.0.0.5:8080/p.git",
                    "http://127.0.0.1.example.org/p.git", "http://[2001:db8::1]/p.git", "http://user@192.0.2.1/p.git", "http:///p.git"] {
            #expect(RemoteAccess.sendsInClearText(to: url), "\(url)")
        }
        for url in ["https://git.example.org/policy.git", "http://127.0.0.1:8080/origin.git", "http://localhost/p.git",
                    "http://[::1]:9418/p.git", "http://127.1.2.3/p.git", "ssh://git@example.org/p.git", "/srv/git/policy.git"] {
            #expect(!RemoteAccess.sendsInClearText(to: url), "\(url)")
        }
    }

    /// A password written in the URL is sent by libgit2 before Bulwark is asked for one: over
    /// plain http to another machine such a URL is refused before anything is fetched, and the
    /// password is shown nowhere; to this machine it is used.
    @Test func aPasswordInAPlainHTTPURLToAnotherMachineIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let refused = try bulwark(["plan", "--repo", "http://bot:S3cretT0ken@git.example.org/policy.git", "--state-dir", dir + "/state"])
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("carries a password over plain http to another machine"), "\(refused.stderr)")
            #expect(!(refused.stdout + refused.stderr).contains("S3cretT0ken"))
            let local = try bulwark(["plan", "--repo", "http://bot:S3cretT0ken@127.0.0.1:9/policy.git", "--state-dir", dir + "/state2"])
            #expect(!local.stderr.contains("carries a password"), "\(local.stderr)")
            #expect(!(local.stdout + local.stderr).contains("S3cretT0ken"))
        }
    }
}
