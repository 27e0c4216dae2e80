/// Scripts of `scripts/` that `carte` runs itself, embedded at build time (SwiftPM `embedInCode`).
public enum BundledScripts {
    /// `scripts/usb-testbed.py`: the umockdev testbed of `carte sim serve --usb`.
    public static let usbTestbed = String(decoding: PackageResources.usb_testbed_py, as: UTF8.self)
}
