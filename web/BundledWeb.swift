/// The files of `web/` that `carte agent serve --demo-port` serves, embedded at build time (SwiftPM
/// `embedInCode`): the JavaScript client and the demo page.
public enum BundledWeb {
    /// Path → (bytes, content type), as served.
    public static let files: [String: (bytes: [UInt8], contentType: String)] = [
        "/": (PackageResources.demo_html, "text/html; charset=utf-8"),
        "/demo.html": (PackageResources.demo_html, "text/html; charset=utf-8"),
        "/demo.js": (PackageResources.demo_js, "text/javascript; charset=utf-8"),
        "/cartekit-agent.js": (PackageResources.cartekit_agent_js, "text/javascript; charset=utf-8"),
    ]
}
