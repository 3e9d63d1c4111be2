@testable import BulwarkAWS
import Foundation
import Testing

/// AWS's published Signature Version 4 test suite (credentials AKIDEXAMPLE, 2015-08-30T12:36:00Z,
/// us-east-1, service "service"): if these hold, the canonical request, the key derivation and
/// the final HMAC are all right.
struct SigV4Tests {
    let signer = SigV4(credentials: AWSCredentials(accessKeyID: "AKIDEXAMPLE",
                                                   secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                       region: "us-east-1", service: "service")
    let date = Date(timeIntervalSince1970: 1_440_938_160)  // 20150830T123600Z

    func authorization(_ method: String, query: [(String, String)] = [], headers: [String: String] = [:], body: String = "") -> String {
        signer.sign(method: method, host: "example.amazonaws.com", path: "/", query: query, headers: headers,
                    body: Array(body.utf8), date: date)["authorization"] ?? ""
    }

    @Test func getVanilla() {
        #expect(SigV4.timestamp(date) == "20150830T123600Z")
        #expect(authorization("GET") == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            + "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    }

    @Test func getVanillaQueryOrderKeyCase() {
        #expect(authorization("GET", query: [("Param2", "value2"), ("Param1", "value1")])
            .hasSuffix("Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"))
    }

    @Test func postVanilla() {
        #expect(authorization("POST").hasSuffix("Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"))
    }

    @Test func postFormURLEncoded() {
        let value = authorization("POST", headers: ["Content-Type": "application/x-www-form-urlencoded"], body: "Param1=value1")
        #expect(value == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            + "SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
    }

    @Test func aSessionTokenIsSentAndSignedAndTheSecretNeverShown() {
        var withToken = signer
        withToken.credentials.sessionToken = "TOKEN"
        let headers = withToken.sign(method: "GET", host: "example.amazonaws.com", path: "/", date: date)
        #expect(headers["x-amz-security-token"] == "TOKEN")
        #expect(headers["authorization"]?.contains("SignedHeaders=host;x-amz-date;x-amz-security-token") == true)
        #expect(!"\(withToken.credentials)".contains("EXAMPLEKEY"))
        #expect(!headers.values.contains { $0.contains("EXAMPLEKEY") })
    }

    @Test func encodingKeepsOnlyUnreservedCharacters() {
        #expect(SigV4.encode("a b/c~d=é") == "a%20b%2Fc~d%3D%C3%A9")
        #expect(SigV4.encode("a/b", keepSlash: true) == "a/b")
    }
}
