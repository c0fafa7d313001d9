/// PEM armour for assertions and deliberately malformed inputs, built from a label so that
/// test sources hold no PEM block text (no key or certificate is ever committed; real
/// test PKI is generated at run time).
public enum PEMText {
    /// `-----BEGIN LABEL-----` and a newline.
    public static func header(_ label: String) -> String { "-----BEGIN \(label)-----\n" }

    /// A block with `label` around `body` (which need not be valid base64).
    public static func block(_ label: String, body: String) -> String {
        header(label) + body + "\n-----END \(label)-----\n"
    }
}
