//! The page and its scripts, styles and vendored chart library, compiled into the binary:
//! nothing is read from disk or a CDN at run time, in debug and release builds alike. Cargo
//! rebuilds when an included file changes; a new file needs a line here (a test checks the
//! directory against this table both ways).

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// One embedded file: its path under `/assets/` (the page itself is `index.html`), its media
/// type and its bytes.
pub(crate) struct Asset {
    pub(crate) path: &'static str,
    pub(crate) media_type: &'static str,
    pub(crate) bytes: &'static [u8],
    /// A strong validator for conditional requests (`If-None-Match`).
    pub(crate) etag: String,
}

macro_rules! embedded {
    ($(($path:literal, $media_type:expr)),* $(,)?) => {
        [$(($path, $media_type, include_bytes!(concat!("../assets/", $path)).as_slice())),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static FILES: [(&str, &str, &[u8]); 12] = embedded![
    ("index.html", "text/html; charset=utf-8"),
    ("app.js", JS),
    ("app.css", CSS),
    ("pages/pipeline.js", JS),
    ("pages/lag.js", JS),
    ("pages/tables.js", JS),
    ("pages/sql.js", JS),
    ("pages/side.js", JS),
    ("vendor/uPlot.iife.min.js", JS),
    ("vendor/uPlot.min.css", CSS),
    ("vendor/uPlot.LICENSE", "text/plain; charset=utf-8"),
    ("vendor/README.md", "text/markdown; charset=utf-8"),
];

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(path, media_type, bytes)| Asset {
            path,
            media_type,
            bytes,
            etag: format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..16]),
        })
        .collect()
});

/// The embedded file at `path`.
pub(crate) fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    fn on_disk(dir: &Path, prefix: &str, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            match entry.file_type().unwrap().is_dir() {
                true => on_disk(&entry.path(), &format!("{name}/"), found),
                false => drop(found.insert(name)),
            }
        }
    }

    #[test]
    fn every_file_under_assets_is_embedded_and_nothing_else() {
        let mut files = BTreeSet::new();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        on_disk(&dir, "", &mut files);
        let embedded: BTreeSet<String> = FILES.iter().map(|f| f.0.to_string()).collect();
        assert_eq!(files, embedded);
    }

    #[test]
    fn scripts_and_styles_have_their_media_types_and_etags_differ() {
        assert_eq!(find("app.js").unwrap().media_type, JS);
        assert_eq!(find("vendor/uPlot.min.css").unwrap().media_type, CSS);
        assert_ne!(find("app.js").unwrap().etag, find("app.css").unwrap().etag);
        assert!(find("../Cargo.toml").is_none());
    }
}
