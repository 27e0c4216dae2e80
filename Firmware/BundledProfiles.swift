/// The reader profiles of `Firmware/virtual/` and the reader catalog, embedded at build time (SwiftPM `embedInCode`).
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
        File(path: "virtual/bi-fente-pinpad.yaml", text: String(decoding: PackageResources.bi_fente_pinpad_yaml, as: UTF8.self)),
    ]

    /// The reader catalog of `carte doctor` (`Firmware/catalog.yaml`, format carte-reader-catalog/1).
    public static let catalog = String(decoding: PackageResources.catalog_yaml, as: UTF8.self)
}
