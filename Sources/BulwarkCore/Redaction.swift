internal import Foundation

/// Bulwark's one redaction of credentials in URLs, for every message, log line and record.
///
/// Hidden: the password of `user:password@` (even one holding a raw `/`, `@` or `?`), a bare
/// `token@` user of an http(s) URL, and the values of query or fragment parameters that carry
/// credentials (`token`, `access_token`, `sig`, `signature`, `password`, `secret`, `key`,
/// `X-Amz-Signature`, … and any name ending in `token`, `secret`, `password` or `signature`).
public enum Redaction {
    public static let placeholder = "<redacted>"

    /// Parameter names whose values are credentials (compared lower-cased).
    static let secretParameters: Set<String> = [
        "token", "access_token", "refresh_token", "id_token", "auth", "authorization", "sig", "signature",
        "password", "passwd", "pwd", "pass", "secret", "client_secret", "key", "api_key", "apikey", "api-key",
        "private_token", "code", "session", "sessionid", "credential", "credentials", "x-amz-signature",
        "x-amz-credential", "x-amz-security-token", "x-goog-signature", "x-goog-credential",
    ]

    static func isSecretParameter(_ name: Substring) -> Bool {
        let lower = name.lowercased()
        return secretParameters.contains(lower) || ["token", "secret", "password", "signature", "apikey"].contains { lower.hasSuffix($0) }
    }

    /// The prefixes of well-known tokens: GitHub's, GitLab's, Slack's, OpenAI's and Stripe's
    /// secret keys, AWS access key ids, Google API keys, Hugging Face, npm and PyPI tokens. The
    /// one list both checks below read.
    static let tokenPrefixes = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xoxb-", "xoxp-", "xoxa-", "xoxr-",
                                "xoxs-", "xoxe.", "xoxe-", "xapp-", "sk-", "sk_live_", "rk_live_", "sk_test_", "AKIA", "ASIA", "AIza", "hf_", "npm_", "pypi-"]

    /// A bare user name that is an access token: a known token prefix, or 20 characters or more
    /// without '/' (user names such as `bot` or `x-access-token` stay readable).
    static func looksLikeToken(_ user: Substring) -> Bool {
        guard !user.isEmpty, !user.contains("/") else { return false }
        return tokenPrefixes.contains { user.hasPrefix($0) } || (user.count >= 20 && user != "x-access-token")
    }

    /// A whole value that has the shape of a well-known credential, whatever key holds it: a
    /// GitHub, GitLab or Slack token, an OpenAI or Stripe secret key, an AWS access key id, a
    /// Google API key, a JWT, a PEM private key. For values read from a file under a key that
    /// does not name a credential (`GITHUB_PAT`, `LITELLM_LICENSE`), which must not reach a plan
    /// or a record either.
    ///
    /// Any word of the value counts (`Bearer ghp_…`, a token on one line of a block scalar). A
    /// known prefix counts only before a long run of token characters (16 or more between
    /// `-`/`_`), so that names such as `sk-learn-pipeline-v2` stay readable.
    public static func looksLikeCredential(_ value: String) -> Bool {
        if value.contains("-----BEGIN "), value.contains("PRIVATE KEY") { return true }
        return value.split(whereSeparator: { $0.isWhitespace || $0 == "\"" || $0 == "'" || $0 == "," || $0 == "=" })
            .contains { holdsCredential($0) }
    }

    /// Whether `word`, or a part of it between brackets and punctuation (`(sk-…)`, `[ghp_…]`,
    /// `see:AKIA…;`), is shaped like a credential (`isCredentialWord`): a token in brackets
    /// reached a record in clear (outside review).
    static func holdsCredential(_ word: Substring) -> Bool {
        if isCredentialWord(word) { return true }
        // Split on whatever no token holds (tokens are letters, digits, `-`, `_`, and a JWT's
        // `.`), each part also without the dots at its ends (`AKIA….`, a sentence's full stop).
        return word.split(whereSeparator: { !($0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".")) })
            .contains { part in
                var trimmed = part
                while trimmed.first == "." { trimmed = trimmed.dropFirst() }
                while trimmed.last == "." { trimmed = trimmed.dropLast() }
                return isCredentialWord(part) || isCredentialWord(trimmed)
            }
    }

    static func isCredentialWord(_ word: Substring) -> Bool {
        guard word.utf8.count >= 16 else { return false }
        // AKIA/ASIA keys have a rule of their own below (exactly 20 capitals and digits).
        if let prefix = tokenPrefixes.first(where: { word.hasPrefix($0) && $0 != "AKIA" && $0 != "ASIA" }) {
            let body = word.dropFirst(prefix.count)
            let longest = body.split(whereSeparator: { $0 == "-" || $0 == "_" }).map(\.count).max() ?? 0
            return longest >= 16 && body.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        }
        let bytes = Array(word.utf8)
        if bytes.count == 20, word.hasPrefix("AKIA") || word.hasPrefix("ASIA"),
           bytes.allSatisfy({ (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) {
            return true
        }
        // A JWT: three base64url parts, the first a JSON object's (`eyJ`).
        return word.hasPrefix("eyJ") && word.split(separator: ".", omittingEmptySubsequences: false).count == 3
    }

    /// `url` with every credential in it replaced by `<redacted>`.
    public static func url(_ url: String) -> String {
        guard let scheme = url.range(of: "://") else { return url }
        let schemeName = url[..<scheme.lowerBound].lowercased()
        var rest = Substring(url[scheme.upperBound...])
        var result = String(url[..<scheme.upperBound])

        // Userinfo `user:password@`: the password runs from the first ':' (with no '/', '?' or '#'
        // before it) to the first '@' after it, so a raw '/', '?' or '#' in a password is
        // hidden too, and on to the last '@' of the host part after it (`TOK@EN@host`: a raw '@'
        // in a password). A ':' followed by digits and then '/', '?' or '#' is a port, not a password.
        let head = rest[..<(rest.firstIndex(where: { $0 == "?" || $0 == "#" }) ?? rest.endIndex)]
        if let password = passwordSpan(in: rest) {
            if let end = password.end {
                result += rest[..<password.colon] + ":" + placeholder
                rest = rest[end...]
            }
        } else if let first = head.firstIndex(of: "@"), !head[..<first].contains("/"), case let at = lastAt(from: first, in: head),
                  schemeName == "http" || schemeName == "https",
                  head[..<at].split(separator: "@").contains(where: looksLikeToken) {
            // https://TOKEN@host: a user name that is a token.
            result += placeholder
            rest = rest[at...]
        }

        // Query and fragment parameters.
        guard let separator = rest.firstIndex(where: { $0 == "?" || $0 == "#" }) else { return result + rest }
        result += rest[..<separator]
        var remaining = rest[separator...]
        while let first = remaining.first {
            result.append(first)
            remaining = remaining.dropFirst()
            let end = remaining.firstIndex(where: { $0 == "&" || $0 == "#" || $0 == ";" }) ?? remaining.endIndex
            let parameter = remaining[..<end]
            if let equals = parameter.firstIndex(of: "="), isSecretParameter(parameter[..<equals]) {
                result += parameter[...equals] + placeholder
            } else {
                result += parameter
            }
            remaining = remaining[end...]
        }
        return result
    }

    /// `url` without its userinfo (`user:password@`, `token@`), found as `url(_:)` finds it: the
    /// repository a URL names whatever credentials it carries, so that a token rotated in
    /// `--repo` is the same repository (and the same state directory). Text without `://`
    /// (a path, `git@host:repo`) is returned as it is.
    public static func withoutUserinfo(_ url: String) -> String {
        guard let scheme = url.range(of: "://") else { return url }
        let rest = url[scheme.upperBound...]
        let head = rest[..<(rest.firstIndex(where: { $0 == "?" || $0 == "#" }) ?? rest.endIndex)]
        if let password = passwordSpan(in: rest) {
            if let end = password.end { return String(url[..<scheme.upperBound] + rest[rest.index(after: end)...]) }
        } else if let first = head.firstIndex(of: "@"), !head[..<first].contains("/") {
            return String(url[..<scheme.upperBound] + head[head.index(after: lastAt(from: first, in: head))...] + rest[head.endIndex...])
        }
        return url
    }

    /// In `rest` (a URL after its `://`), userinfo with a password: the ':' before the password
    /// (the first, with no '/', '?' or '#' before it) and the last '@' of the host part that ends
    /// the userinfo (`lastAt`); `end` nil where the ':' is a port's (digits, then '/', '?' or
    /// '#'). Nil when there is no ':' followed by an '@'.
    static func passwordSpan(in rest: Substring) -> (colon: Substring.Index, end: Substring.Index?)? {
        guard let colon = rest.firstIndex(of: ":"), !rest[..<colon].contains(where: { "/?#".contains($0) }),
              let at = rest[colon...].firstIndex(of: "@") else { return nil }
        let between = rest[rest.index(after: colon)..<at]
        let digits = between.prefix(while: { $0.isASCII && $0.isNumber })
        let isPort = !digits.isEmpty && between.dropFirst(digits.count).first.map { "/?#".contains($0) } == true
        return (colon, isPort ? nil : lastAt(from: at, in: rest))
    }

    /// The last '@' of the host part that starts after the '@' at `at`: userinfo ends at the last
    /// '@' before the path, query or fragment (`eve:TOK@SECRET@host/x`), while an '@' in the path
    /// (`host/a@b.git`) is not part of it.
    static func lastAt(from at: Substring.Index, in text: Substring) -> Substring.Index {
        var last = at
        while let next = text[text.index(after: last)...].firstIndex(where: { "@/?#".contains($0) }), text[next] == "@" {
            last = next
        }
        return last
    }

    /// `text` with its URLs redacted (`urls(in:)`), every word shaped like a well-known
    /// credential (`looksLikeCredential`) made `<redacted>`, and so the value after a name that
    /// says it is a secret (`password=…`, `password:…`, `api_key: …`, `"client_key": …`;
    /// `namesSecret`), the values of a cookie header's pairs (`Cookie: session=…; theme=…`,
    /// `Set-Cookie: sid=…`, the names kept), and a password glued to `-p` on the command line
    /// of a program that takes it so (`mysql -uroot -p…`, `sshpass -p…`): for a message written
    /// into a record or a commit whose text may quote what a target holds (an adapter's error)
    /// or what a scanner reported (a finding's title and evidence).
    public static func words(in text: String) -> String {
        let text = urls(in: privateKeys(in: text))
        var result = ""
        var rest = Substring(text)
        var secretNext = false
        // The secret is a query parameter's value (`?sig=`): it ends at `&`, `#` or `;`.
        var secretInQuery = false
        // The last word, for a name the value follows after a blank or a quote (`"password": "…"`,
        // `password = …`).
        var last: Substring = ""
        // In a cookie header's value (to the end of its line, or the first value not followed by
        // `;`): every `name=` is a cookie's name, kept, and the value after it is redacted.
        var inCookie = false
        var cookieName = false
        // On the command line of a program that takes a password glued to `-p` (to the end of its line).
        var gluedPasswordCommand: Substring?
        while !rest.isEmpty {
            let end = rest.firstIndex(where: { $0.isWhitespace || "\"',=".contains($0) }) ?? rest.endIndex
            let word = rest[..<end]
            if !word.isEmpty {
                if inCookie && end < rest.endIndex && rest[end] == "=" && !secretInQuery {
                    // `Cookie: session=…`: the cookie's name stays, its value goes.
                    result += word
                    cookieName = true
                    last = word
                } else if secretNext && word != ":" {
                    // `Authorization: Basic …`: the scheme stays, the credential after it goes.
                    if authorizationSchemes.contains(word.lowercased()) && !secretInQuery {
                        result += word
                    } else if secretInQuery, let next = word.firstIndex(where: { $0 == "&" || $0 == "#" || $0 == ";" }) {
                        // `?sig=…&se=…`: the value ends at the query's next parameter.
                        result += placeholder + word[next...]
                        (secretNext, secretInQuery) = (false, false)
                    } else {
                        result += placeholder
                        (secretNext, secretInQuery) = (false, false)
                        inCookie = false
                    }
                } else if let gluedPasswordCommand, word.hasPrefix("-p"), !word.hasPrefix("--") {
                    // `mysql -uroot -pS3cret`; `sshpass -p S3cret`.
                    if word.count > 2 { result += "-p" + placeholder } else { result += word }
                    if word.count == 2 && gluedPasswordCommand == "sshpass" { secretNext = true }
                    last = word
                } else if let colon = word.firstIndex(of: ":"), colon != word.startIndex, word.index(after: colon) < word.endIndex,
                          namesSecret(word[..<colon]) {
                    // `password:S3cret`, with no blank after the colon.
                    let value = word[word.index(after: colon)...]
                    if authorizationSchemes.contains(value.lowercased()) {
                        result += word
                        secretNext = true
                    } else {
                        result += word[...colon] + placeholder
                    }
                    last = word[..<colon]
                } else {
                    result += holdsCredential(word) ? placeholder : String(word)
                    // `api_key: …`, JSON's `"password": …`, a command line's `--password …`.
                    if word.hasSuffix(":") && namesSecret(word == ":" ? last : word.dropLast())
                        || word.hasPrefix("--") && namesSecret(word) {
                        (secretNext, secretInQuery) = (true, false)
                        inCookie = namesCookie(word == ":" ? last : word.dropLast())
                    }
                    if gluedPasswordCommands.contains(word.split(separator: "/").last ?? word) {
                        gluedPasswordCommand = word.split(separator: "/").last ?? word
                    }
                    last = word
                }
            }
            if end < rest.endIndex {
                let separator = rest[end]
                if separator == "=" && cookieName {
                    // A cookie's value ends at `;`, as a query parameter's at `&`.
                    (secretNext, secretInQuery, cookieName) = (true, true, false)
                } else if separator == "=" {
                    // `password=…` and `password = …`.
                    secretInQuery = isQueryParameterSecret(word)
                    if secretInQuery || namesSecret(word.isEmpty ? last : word) { secretNext = true }
                } else if separator.isNewline {
                    (inCookie, gluedPasswordCommand) = (false, nil)
                }
                result.append(separator)
                rest = rest[rest.index(after: end)...]
            } else {
                rest = rest[end...]
            }
        }
        return text.contains("PRIVATE KEY") && text.contains("-----BEGIN ") ? placeholder : result
    }

    /// Programs that take a password glued to `-p` (`mysql -pS3cret`), or after it (`sshpass -p S3cret`).
    static let gluedPasswordCommands: Set<Substring> = ["mysql", "mysqldump", "mysqladmin", "mysqlcheck", "mysqlimport", "mysqlshow",
                                                        "mysqlpump", "mysqlbinlog", "mariadb", "mariadb-dump", "mariadb-admin", "sshpass"]

    /// A cookie header's name (`Cookie`, `Set-Cookie`): its value is `name=value` pairs.
    static func namesCookie(_ name: Substring) -> Bool {
        ["cookie", "cookies"].contains(nameWords(name).last ?? "")
    }

    /// The schemes of an `Authorization` header's value, kept before the credential they introduce.
    static let authorizationSchemes: Set<String> = ["basic", "bearer", "token", "digest", "negotiate", "ntlm", "aws4-hmac-sha256", "bot"]

    /// A query's tail outside a URL (`?sig=…`, `…&token=…`, a presigned link's query quoted on
    /// its own): whether the parameter before `=` carries a credential (`isSecretParameter`).
    static func isQueryParameterSecret(_ word: Substring) -> Bool {
        guard let separator = word.lastIndex(where: { $0 == "?" || $0 == "&" }) else { return false }
        let name = word[word.index(after: separator)...]
        return !name.isEmpty && isSecretParameter(name)
    }

    /// `text` with every PEM private key block (`-----BEGIN … PRIVATE KEY-----` to its `-----END
    /// … PRIVATE KEY-----`, or to the end of the text when it was cut short) replaced whole by
    /// `<redacted>`: the lines of a key are not words shaped like a credential, and the text
    /// around the key stays readable.
    static func privateKeys(in text: String) -> String {
        guard text.contains("PRIVATE KEY") else { return text }
        var result = ""
        var rest = Substring(text)
        while let begin = rest.range(of: "-----BEGIN ") {
            // The label: up to the next `-----` (`OPENSSH PRIVATE KEY`, `RSA PRIVATE KEY`).
            guard let close = rest[begin.upperBound...].range(of: "-----") else { break }
            let label = rest[begin.upperBound..<close.lowerBound]
            guard label.hasSuffix("PRIVATE KEY"), !label.contains(where: \.isNewline) else {
                result += rest[..<close.upperBound]
                rest = rest[close.upperBound...]
                continue
            }
            result += rest[..<begin.lowerBound] + placeholder
            let after = rest[close.upperBound...]
            if let end = after.range(of: "-----END "),
               let endClose = after[end.upperBound...].range(of: "-----") {
                rest = after[endClose.upperBound...]
            } else {
                rest = after[after.endIndex...]
            }
        }
        return result + rest
    }

    /// A name in free text whose value is a secret (leading `-` aside; letters, digits, `_`, `-`
    /// and `.` only): `secretName` judges it, so that a scanner's `encryption_key: …`,
    /// `ssh_key=…`, `"client_key": …`, `passphrase=…` or `PGPASS=…` is read as a key of a
    /// configuration file is. A bare `key`, `code` or `auth` stays readable (`key: name`, an
    /// error's `code: 42`).
    static func namesSecret(_ name: Substring) -> Bool {
        let name = name.drop(while: { $0 == "-" })
        // A name, not the tail of a link's query (`…&token=`, which `urls(in:)` already judged).
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_-.".contains($0)) }) else { return false }
        return secretName(name)
    }

    /// Bulwark's one notion of a name that says its value is a secret, for a configuration
    /// file's keys (`ConfigFileDriver.isSecretKey`, which adds whole keys such as `auth`) and
    /// for the names in free text (`namesSecret`). The name is read as words (`nameWords`:
    /// `encryptionKey`, `encryption_key`, `ENCRYPTION-KEY` and `encryption.key` alike), and
    /// it is a secret's when
    /// - it holds `password`, `passwd`, `passphrase` or `secret` anywhere (`AWS_SECRET_ACCESS_KEY`);
    /// - its last word (digits aside: `api_key_2`) ends in `token`, `credential(s)`,
    ///   `authorization`, `apikey`, `privatekey` or `cookie(s)` (`accessToken`, `Set-Cookie`);
    /// - its last word is `pwd`, `pass`, `pin`, or a word run together that names a credential
    ///   (`pgpass`, `signingkey`: `compoundSecretWords`);
    /// - its last word is `key` or `keys` after another word (`signingKey`, `ssh_key`,
    ///   `client_keys`): a key of something. Alone, `key` names a key, not its value.
    /// As whole words, so that `passthrough`, `bypass`, `spin`, `monkey` or `keyboard` stay readable.
    public static func secretName<S: StringProtocol>(_ name: S) -> Bool {
        let lower = name.lowercased()
        if ["password", "passwd", "passphrase", "secret"].contains(where: lower.contains) { return true }
        let words = nameWords(name)
        guard let last = words.last(where: { !$0.allSatisfy(\.isNumber) }) else { return false }
        if secretLastWordEndings.contains(where: last.hasSuffix) || secretLastWords.contains(last) { return true }
        return (last == "key" || last == "keys") && words.count(where: { !$0.allSatisfy(\.isNumber) }) > 1
    }

    /// What the last word of a name that names a secret ends in (`secretName`).
    static let secretLastWordEndings = ["token", "tokens", "credential", "credentials", "authorization", "apikey", "apikeys",
                                        "privatekey", "privatekeys", "cookie", "cookies"]

    /// Whole last words that name a secret (`secretName`): short names, and names of a
    /// credential written as one word (`PGPASS`, `signingkey`), which no split finds.
    static let secretLastWords: Set<String> = ["pwd", "pass", "passwd", "pin", "passcode", "pgpass", "dbpass", "dbpwd",
                                               "accesskey", "signingkey", "encryptionkey", "masterkey", "sshkey", "clientkey", "sessionkey"]

    /// A name's words, lower-cased: split at `_`, `-`, `.`, a blank, where a lower-case letter
    /// or a digit meets a capital (`dbPwd`: `db`, `pwd`), where a run of capitals meets a
    /// capitalised word (`APIKey`: `api`, `key`), and where letters meet digits (`key2`: `key`, `2`).
    public static func nameWords<S: StringProtocol>(_ name: S) -> [String] {
        var words: [String] = []
        var word = ""
        let characters = Array(name)
        for (index, c) in characters.enumerated() {
            if c == "_" || c == "-" || c == "." || c.isWhitespace {
                if !word.isEmpty { words.append(word) }
                word = ""
                continue
            }
            if let p = index > 0 ? characters[index - 1] : nil, !word.isEmpty {
                let next = index + 1 < characters.count ? characters[index + 1] : nil
                let split = c.isUppercase && (p.isLowercase || p.isNumber)
                    || c.isUppercase && p.isUppercase && next?.isLowercase == true
                    || c.isNumber != p.isNumber
                if split {
                    words.append(word)
                    word = ""
                }
            }
            word += c.lowercased()
        }
        if !word.isEmpty { words.append(word) }
        return words
    }

    /// `text` with every URL in it (`scheme://…` up to white space or a quote) redacted:
    /// for error messages that embed a URL, such as a failed HTTP request's.
    public static func urls(in text: String) -> String {
        guard text.contains("://") else { return text }
        var result = ""
        var rest = Substring(text)
        while let marker = rest.range(of: "://") {
            // The scheme: letters, digits, '+', '-', '.' just before "://".
            var start = marker.lowerBound
            while start > rest.startIndex {
                let previous = rest.index(before: start)
                let c = rest[previous]
                guard c.isASCII, c.isLetter || c.isNumber || c == "+" || c == "-" || c == "." else { break }
                start = previous
            }
            let end = rest[marker.upperBound...].firstIndex(where: { $0.isWhitespace || "\"'<>`".contains($0) }) ?? rest.endIndex
            result += rest[..<start]
            result += url(String(rest[start..<end]))
            rest = rest[end...]
        }
        return result + rest
    }
}

/// `url` with any password or token in it replaced, for messages and logs (`Redaction.url`).
public func redactedURL(_ url: String) -> String { Redaction.url(url) }
