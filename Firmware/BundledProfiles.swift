/// The reader profiles of `Firmware/virtual/`, embedded at build time (SwiftPM `embedInCode`).
public enum BundledProfiles {
    /// A bundled profile file: its path under `Firmware/` and its YAML text.
    public struct File: Sendable {
        public let path: String
        public let text: String
    }

    /// Every bundled profile, in a stable order.
    public static let all: [File] = [
        File(path: "virtual/mono-fente.yaml", text: String(decoding: PackageResources.mono_fente_yaml, as: UTF8.self)),
        File(path: "virtual/bi-fente.yaml", text: String(decoding: PackageResources.bi_fente_yaml, as: UTF8.self)),
        File(path: "virtual/contactless.yaml", text: String(decoding: PackageResources.contactless_yaml, as: UTF8.self)),
    ]
}
