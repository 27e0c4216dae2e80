/// The card images bundled with CarteKit, embedded in the binary at build time from the files of
/// `CardImages/` (SwiftPM `embedInCode`), so the CLI and tests need no file on disk.
public enum BundledImages {
    /// A bundled image: its path under `CardImages/` and its YAML text.
    public struct Image: Sendable {
        /// The path under `CardImages/`, for example `demo/vitale2-demo.yaml`.
        public let path: String
        /// The image text (card-image format, see `CardImages/README.md`).
        public let text: String
    }

    /// Every bundled image.
    public static let all: [Image] = [
        Image(path: "demo/vitale2-demo.yaml", text: String(decoding: PackageResources.vitale2_demo_yaml, as: UTF8.self)),
        Image(path: "demo/iso-generic.yaml", text: String(decoding: PackageResources.iso_generic_yaml, as: UTF8.self)),
    ]

    /// The image used when a command names none: the synthetic demo Vitale 2.
    public static var defaultImage: Image { all[0] }

    /// The bundled image at `path` (as under `CardImages/`), or `nil`.
    public static func image(at path: String) -> Image? { all.first { $0.path == path } }
}
