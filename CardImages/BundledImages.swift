/// The card images bundled with CarteKit, embedded in the binary at build time from the files of
/// `CardImages/` (SwiftPM `embedInCode`), so the CLI and tests need no file on disk.
public enum BundledImages {
    /// A bundled image or persona: its path under `CardImages/` and its YAML text.
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
        Image(path: "vitale/single-insured.yaml", text: String(decoding: PackageResources.single_insured_yaml, as: UTF8.self)),
        Image(path: "vitale/family-five.yaml", text: String(decoding: PackageResources.family_five_yaml, as: UTF8.self)),
        Image(path: "vitale/twins.yaml", text: String(decoding: PackageResources.twins_yaml, as: UTF8.self)),
        Image(path: "vitale/born-abroad.yaml", text: String(decoding: PackageResources.born_abroad_yaml, as: UTF8.self)),
        Image(path: "vitale/corsica.yaml", text: String(decoding: PackageResources.corsica_yaml, as: UTF8.self)),
        Image(path: "vitale/rights-expired.yaml", text: String(decoding: PackageResources.rights_expired_yaml, as: UTF8.self)),
        Image(path: "vitale/ald.yaml", text: String(decoding: PackageResources.ald_yaml, as: UTF8.self)),
        Image(path: "vitale/c2s.yaml", text: String(decoding: PackageResources.c2s_yaml, as: UTF8.self)),
        Image(path: "vitale/amc-mutuelle.yaml", text: String(decoding: PackageResources.amc_mutuelle_yaml, as: UTF8.self)),
        Image(path: "vitale/corrupt.yaml", text: String(decoding: PackageResources.corrupt_yaml, as: UTF8.self)),
        Image(path: "vitale/vitale1.yaml", text: String(decoding: PackageResources.vitale1_yaml, as: UTF8.self)),
    ]

    /// The Carte Vitale personas (`vitale/*.yaml`, format carte-persona/1).
    public static var vitalePersonas: [Image] { all.filter { $0.path.hasPrefix("vitale/") } }

    /// The image used when a command names none: the synthetic demo Vitale 2.
    public static var defaultImage: Image { all[0] }

    /// The bundled image at `path` (as under `CardImages/`), or `nil`.
    public static func image(at path: String) -> Image? { all.first { $0.path == path } }
}
