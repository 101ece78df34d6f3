//! Where the CLI finds the API token, in this order:
//! 1. `--token-file FILE` (or `METROFS_TOKEN_FILE`): the file's content;
//! 2. `METROFS_TOKEN`: the token itself;
//! 3. the array's own token file, whose path `GET /api/health` names (`token_file`): read when
//!    this user may (it is mode 600: the array's owner, or root). So on the array's machine —
//!    and with `metrofs demo`, whose token sits in its directory — nothing is to configure.
//!
//! Reads go without a token when none is found (loopback reads need none); changing calls
//! fail before anything is sent, saying which of the three to use.

use std::path::PathBuf;

/// The environment variable holding a token.
pub const TOKEN_ENV: &str = "METROFS_TOKEN";

/// Where a token may come from.
#[derive(Debug, Clone, Default)]
pub struct TokenSource {
    /// `--token-file` / `METROFS_TOKEN_FILE`.
    pub file: Option<PathBuf>,
    /// `METROFS_TOKEN`.
    pub value: Option<String>,
}

impl TokenSource {
    /// From `--token-file` and the environment.
    #[must_use]
    pub fn new(file: Option<PathBuf>) -> Self {
        Self {
            file,
            value: std::env::var(TOKEN_ENV)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
        }
    }

    /// The token, or why none was found. `discover` asks the array where its token file is.
    pub fn resolve(&self, discover: impl FnOnce() -> Option<String>) -> Result<String, String> {
        if let Some(f) = &self.file {
            return read(f).map_err(|e| format!("cannot read --token-file {}: {e}", f.display()));
        }
        if let Some(v) = &self.value {
            return Ok(v.clone());
        }
        let hint = "pass --token-file FILE (or set METROFS_TOKEN_FILE, or METROFS_TOKEN to the token itself)";
        match discover() {
            Some(path) => read(&PathBuf::from(&path)).map_err(|e| {
                format!("this call needs the array's API token, which it keeps in {path}, and that file cannot be read here ({e})\nhint: run the CLI as the array's user (or root) on its machine, or {hint}")
            }),
            None => Err(format!(
                "this call needs the array's API token\nhint: {hint}; the array keeps it in [api] token_file, default DATA_DIR/api.token"
            )),
        }
    }
}

fn read(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let t = text.trim();
    if t.is_empty() {
        return Err("the file is empty".into());
    }
    Ok(t.to_owned())
}

/// Who runs the CLI, for the array's event log (`cli:USER@ADDR`).
#[must_use]
pub fn user_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("uid{}", rustix::process::getuid().as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_errors() {
        let tmp = tempfile::tempdir().expect("tmp");
        let f = tmp.path().join("t");
        std::fs::write(&f, "  from-file \n").expect("write");
        let both = TokenSource {
            file: Some(f.clone()),
            value: Some("from-env".into()),
        };
        assert_eq!(both.resolve(|| None).expect("file"), "from-file");
        let env = TokenSource {
            file: None,
            value: Some("from-env".into()),
        };
        assert_eq!(env.resolve(|| Some("/x".into())).expect("env"), "from-env");
        let none = TokenSource::default();
        assert_eq!(
            none.resolve(|| Some(f.display().to_string()))
                .expect("discovered"),
            "from-file"
        );
        let e = none.resolve(|| None).expect_err("nothing");
        assert!(
            e.contains("--token-file") && e.contains("METROFS_TOKEN"),
            "{e}"
        );
        let e = none
            .resolve(|| Some("/nonexistent/api.token".into()))
            .expect_err("unreadable");
        assert!(e.contains("/nonexistent/api.token"), "{e}");
        let missing = TokenSource {
            file: Some(tmp.path().join("nope")),
            value: None,
        };
        assert!(missing
            .resolve(|| None)
            .expect_err("missing")
            .contains("--token-file"));
    }
}
