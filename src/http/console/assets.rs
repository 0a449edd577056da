//! The console's files, compiled into the binary: no files to install, nothing fetched from
//! elsewhere, so it works on a network with no way out. Plain HTML, CSS and JavaScript
//! modules (no build step); the one library, a YAML parser, is vendored with its licence.

/// One embedded file.
pub struct Asset {
    /// Its path under `console/` (and under `/admin/assets/`).
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
    /// A hash of its bytes, for the entity tag.
    hash: u64,
}

impl Asset {
    /// The file's hash as an entity tag: weak, since a compressed answer is another
    /// representation of the same file.
    pub fn etag(&self) -> String {
        format!("W/\"{:016x}\"", self.hash)
    }
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";
const TEXT: &str = "text/plain; charset=utf-8";

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../../../console/", $path)),
            hash: fnv1a(include_bytes!(concat!("../../../console/", $path))),
        }
    };
}

/// The page at `/admin/`.
pub static PAGE: Asset = asset!("index.html", HTML);

/// Everything under `/admin/assets/`.
static ASSETS: &[Asset] = &[
    asset!("app.css", CSS),
    asset!("favicon.svg", SVG),
    asset!("js/api.js", JS),
    asset!("js/diff.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/main.js", JS),
    asset!("js/session.js", JS),
    asset!("js/yaml.js", JS),
    asset!("js/yamlbox.js", JS),
    asset!("js/views/audit.js", JS),
    asset!("js/views/documents.js", JS),
    asset!("js/views/editor.js", JS),
    asset!("js/views/explain.js", JS),
    asset!("js/views/history.js", JS),
    asset!("js/views/keys.js", JS),
    asset!("js/views/overview.js", JS),
    asset!("js/views/preview.js", JS),
    asset!("js/views/revocations.js", JS),
    asset!("js/views/trace.js", JS),
    asset!("vendor/js-yaml.mjs", JS),
    asset!("vendor/js-yaml.LICENSE", TEXT),
];

/// The asset at `path`, if there is one.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// FNV-1a, at compile time: a change of any byte changes the tag.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `console/` is served, so adding one without listing it fails here
    /// rather than in a browser.
    #[test]
    fn every_console_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut on_disk = Vec::new();
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(folder).unwrap() {
                let path = entry.unwrap().path();
                match path.is_dir() {
                    true => folders.push(path),
                    false => on_disk.push(
                        path.strip_prefix(&root)
                            .unwrap()
                            .to_string_lossy()
                            .replace('\\', "/"),
                    ),
                }
            }
        }
        on_disk.retain(|p| p != PAGE.path);
        on_disk.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }

    #[test]
    fn entity_tags_follow_the_bytes() {
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert_eq!(PAGE.etag().len(), 20);
        assert!(find("js/main.js").is_some());
        assert!(find("../Cargo.toml").is_none());
    }
}
