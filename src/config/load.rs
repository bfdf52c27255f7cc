//! Reading a configuration file: TOML syntax and typed deserialization.
//! Semantic checks happen when the config is compiled into a plan
//! ([`crate::plan::compile`]), which reports through the same [`Diagnostics`].

use super::{Config, Diagnostic, Diagnostics, Severity};
use std::path::{Path, PathBuf};

/// A configuration that parsed, with what is needed to report on it later.
pub struct Loaded {
    pub config: Config,
    /// Directory that relative paths in the file are resolved against.
    pub base_dir: PathBuf,
    pub diagnostics: Diagnostics,
}

/// Reads and parses a file. Errors name the file, the key path and the line.
pub fn load_file(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            severity: Severity::Error,
            file: name.clone(),
            key_path: String::new(),
            line: None,
            message: format!("cannot read file: {e}"),
        }]
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_str(&name, &src, base)
}

/// Parses configuration text; `name` is what errors call the file.
pub fn load_str(name: &str, src: &str, base_dir: PathBuf) -> Result<Loaded, Vec<Diagnostic>> {
    let mut diagnostics = Diagnostics::new(name, src);
    let deserializer = toml::Deserializer::new(src);
    match serde_path_to_error::deserialize::<_, Config>(deserializer) {
        Ok(config) => Ok(Loaded {
            config,
            base_dir,
            diagnostics,
        }),
        Err(err) => {
            let key_path = err.path().to_string();
            let inner = err.into_inner();
            let line = inner.span().map(|s| diagnostics.line_at(s.start));
            let key_path = if key_path == "." {
                String::new()
            } else {
                key_path
            };
            diagnostics.push_at(Severity::Error, key_path, line, inner.message().to_string());
            Err(diagnostics.into_items())
        }
    }
}
