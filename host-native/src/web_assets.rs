//! The visualiser's files (`--web-root DIR`, what host-wasm/build.sh writes), served at `/` on the
//! metrics listener. Only regular files under DIR are served: a request path is a list of plain
//! names (no `..`, no hidden names, no percent-escapes, no backslashes), and the file it names must
//! still be under DIR once symbolic links are resolved.

use std::path::{Path, PathBuf};

/// A file to send.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// Why a path is not served.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a plain path under the folder (404 as well: nothing to learn from the difference).
    BadPath,
    NotFound,
}

/// The largest file served (the page's .wasm is ~470 KiB): a mistaken `--web-root` pointing at a
/// folder of big files cannot make one request read gigabytes into memory.
pub const MAX_FILE: u64 = 16 << 20;

/// The folder and the files in it.
#[derive(Clone, Debug)]
pub struct WebRoot {
    root: PathBuf,
}

impl WebRoot {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Reads the file `path` (the request target without its query) names.
    pub async fn get(&self, path: &str) -> Result<Asset, Refused> {
        let relative = plain_path(path).ok_or(Refused::BadPath)?;
        let root = tokio::fs::canonicalize(&self.root)
            .await
            .map_err(|_| Refused::NotFound)?;
        let mut file = root.join(&relative);
        if tokio::fs::metadata(&file).await.is_ok_and(|m| m.is_dir()) {
            file.push("index.html");
        }
        let file = tokio::fs::canonicalize(&file)
            .await
            .map_err(|_| Refused::NotFound)?;
        if !file.starts_with(&root) {
            return Err(Refused::BadPath);
        }
        let meta = tokio::fs::metadata(&file)
            .await
            .map_err(|_| Refused::NotFound)?;
        if !meta.is_file() || meta.len() > MAX_FILE {
            return Err(Refused::NotFound);
        }
        let body = tokio::fs::read(&file)
            .await
            .map_err(|_| Refused::NotFound)?;
        Ok(Asset {
            content_type: content_type(&file),
            body,
        })
    }
}

/// `/a/b.js` → `a/b.js`; `None` for anything but plain names.
fn plain_path(path: &str) -> Option<PathBuf> {
    let rest = path.strip_prefix('/')?;
    let mut out = PathBuf::new();
    for name in rest.split('/').filter(|n| !n.is_empty()) {
        let plain = !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !plain {
            return None;
        }
        out.push(name);
    }
    Some(out)
}

fn content_type(file: &Path) -> &'static str {
    match file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "jsonl" | "txt" | "md" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> (PathBuf, WebRoot) {
        let base = std::env::temp_dir().join(format!("brlock-web-{}", std::process::id()));
        let root = base.join("web");
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        std::fs::write(root.join("index.html"), "<html>").unwrap();
        std::fs::write(root.join("pkg/brlock_wasm_bg.wasm"), b"\0asm").unwrap();
        std::fs::write(root.join("app.js"), "x").unwrap();
        std::fs::write(root.join(".hidden"), "h").unwrap();
        std::fs::write(base.join("secret.txt"), "s").unwrap();
        let _ = std::fs::remove_file(root.join("escape"));
        std::os::unix::fs::symlink(base.join("secret.txt"), root.join("escape")).unwrap();
        (base, WebRoot::new(root))
    }

    #[tokio::test]
    async fn serves_files_under_the_folder_with_their_types_and_nothing_else() {
        let (base, web) = folder();
        let index = web.get("/").await.unwrap();
        assert_eq!(
            (index.content_type, index.body),
            ("text/html; charset=utf-8", b"<html>".to_vec())
        );
        assert_eq!(
            web.get("/pkg/brlock_wasm_bg.wasm")
                .await
                .unwrap()
                .content_type,
            "application/wasm"
        );
        assert_eq!(
            web.get("/app.js").await.unwrap().content_type,
            "text/javascript; charset=utf-8"
        );
        for bad in [
            "/../secret.txt",
            "/pkg/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/.hidden",
            "/..\\secret.txt",
            "//etc/passwd",
            "relative",
            "/escape",
        ] {
            assert!(web.get(bad).await.is_err(), "{bad} was served");
        }
        assert_eq!(web.get("/nope.js").await, Err(Refused::NotFound));
        std::fs::remove_dir_all(base).unwrap();
    }
}
