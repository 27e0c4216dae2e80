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
        Image(path: "cps/cpa.yaml", text: String(decoding: PackageResources.cpa_yaml, as: UTF8.self)),
        Image(path: "cps/cpe-etablissement.yaml", text: String(decoding: PackageResources.cpe_etablissement_yaml, as: UTF8.self)),
        Image(path: "cps/cpf-etudiant.yaml", text: String(decoding: PackageResources.cpf_etudiant_yaml, as: UTF8.self)),
        Image(path: "cps/cps3-sans-contact.yaml", text: String(decoding: PackageResources.cps3_sans_contact_yaml, as: UTF8.self)),
        Image(path: "cps/cps4-medecin.yaml", text: String(decoding: PackageResources.cps4_medecin_yaml, as: UTF8.self)),
        Image(path: "cps/expiree.yaml", text: String(decoding: PackageResources.expiree_yaml, as: UTF8.self)),
        Image(path: "cps/medecin-liberal.yaml", text: String(decoding: PackageResources.medecin_liberal_yaml, as: UTF8.self)),
        Image(path: "cps/pharmacien-titulaire.yaml", text: String(decoding: PackageResources.pharmacien_titulaire_yaml, as: UTF8.self)),
        Image(path: "cps/pin-bloque.yaml", text: String(decoding: PackageResources.pin_bloque_yaml, as: UTF8.self)),
        Image(path: "cps/personas/cpa.persona.yaml", text: String(decoding: PackageResources.cpa_persona_yaml, as: UTF8.self)),
        Image(path: "cps/personas/cpe-etablissement.persona.yaml", text: String(decoding: PackageResources.cpe_etablissement_persona_yaml, as: UTF8.self)),
        Image(path: "cps/personas/cpf-etudiant.persona.yaml", text: String(decoding: PackageResources.cpf_etudiant_persona_yaml, as: UTF8.self)),
        Image(path: "cps/personas/cps3-sans-contact.persona.yaml", text: String(decoding: PackageResources.cps3_sans_contact_persona_yaml, as: UTF8.self)),
        Image(path: "cps/personas/cps4-medecin.persona.yaml", text: String(decoding: PackageResources.cps4_medecin_persona_yaml, as: UTF8.self)),
        Image(path: "cps/personas/expiree.persona.yaml", text: String(decoding: PackageResources.expiree_persona_yaml, as: UTF8.self)),
        Image(path: "cps/personas/medecin-liberal.persona.yaml", text: String(decoding: PackageResources.medecin_liberal_persona_yaml, as: UTF8.self)),
        Image(path: "cps/personas/pharmacien-titulaire.persona.yaml", text: String(decoding: PackageResources.pharmacien_titulaire_persona_yaml, as: UTF8.self)),
        Image(path: "cps/personas/pin-bloque.persona.yaml", text: String(decoding: PackageResources.pin_bloque_persona_yaml, as: UTF8.self)),
        Image(path: "apcv/claire-exemple.yaml", text: String(decoding: PackageResources.claire_exemple_yaml, as: UTF8.self)),
        Image(path: "apcv/famille-cinq.yaml", text: String(decoding: PackageResources.famille_cinq_yaml, as: UTF8.self)),
        Image(path: "apcv/refus.yaml", text: String(decoding: PackageResources.refus_yaml, as: UTF8.self)),
        Image(path: "apcv/personas/claire-exemple.persona.yaml", text: String(decoding: PackageResources.claire_exemple_persona_yaml, as: UTF8.self)),
        Image(path: "apcv/personas/famille-cinq.persona.yaml", text: String(decoding: PackageResources.famille_cinq_persona_yaml, as: UTF8.self)),
        Image(path: "apcv/personas/refus.persona.yaml", text: String(decoding: PackageResources.refus_persona_yaml, as: UTF8.self)),
    ]

    /// The PEM texts of the test PKI that signed the bundled CPx images (`cps/pki/`): TEST authorities,
    /// never the ANS PKI. The keys are test keys, shipped so anyone can build more test cards.
    public static let testPKI = (root: String(decoding: PackageResources.test_root_ca_pem, as: UTF8.self),
                                 rootKey: String(decoding: PackageResources.test_root_ca_key_pem, as: UTF8.self),
                                 intermediate: String(decoding: PackageResources.test_cpx_ca_pem, as: UTF8.self),
                                 intermediateKey: String(decoding: PackageResources.test_cpx_ca_key_pem, as: UTF8.self))

    /// The CPx card images (`cps/*.yaml`, built from `cps/personas/*.persona.yaml`).
    public static var cpsImages: [Image] { all.filter { $0.path.hasPrefix("cps/") && !$0.path.hasPrefix("cps/personas/") } }

    /// The CPx personas (`cps/personas/*.persona.yaml`, format carte-cps-persona/1).
    public static var cpsPersonas: [Image] { all.filter { $0.path.hasPrefix("cps/personas/") } }

    /// The phone images with the (synthetic) appli carte Vitale (`apcv/*.yaml`, built from
    /// `apcv/personas/*.persona.yaml`).
    public static var apcvImages: [Image] { all.filter { $0.path.hasPrefix("apcv/") && !$0.path.hasPrefix("apcv/personas/") } }

    /// The phone personas (`apcv/personas/*.persona.yaml`, format carte-apcv-persona/1).
    public static var apcvPersonas: [Image] { all.filter { $0.path.hasPrefix("apcv/personas/") } }

    /// The Carte Vitale personas (`vitale/*.yaml`, format carte-persona/1).
    public static var vitalePersonas: [Image] { all.filter { $0.path.hasPrefix("vitale/") } }

    /// The image used when a command names none: the synthetic demo Vitale 2.
    public static var defaultImage: Image { all[0] }

    /// The bundled image at `path` (as under `CardImages/`), or `nil`.
    public static func image(at path: String) -> Image? { all.first { $0.path == path } }
}
