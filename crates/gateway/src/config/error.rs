//! The one error of loading a config: what is wrong, and where.

/// A config the gateway refuses, always with where: the JSON path of the offending key, or the
/// line (and column) of the text when the text itself is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config error at {path}: {message}")]
    At { path: String, message: String },
    /// YAML syntax, or `$VAR` expansion.
    #[error("config error at {}: {message}", text_location(*.line, *.column))]
    Text {
        line: usize,
        column: Option<usize>,
        message: String,
    },
    #[error("config error: cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

fn text_location(line: usize, column: Option<usize>) -> String {
    match column {
        Some(c) => format!("line {line}, column {c}"),
        None => format!("line {line}"),
    }
}

impl ConfigError {
    /// Where the error is: a JSON path, `line N[, column M]`, or the file.
    pub fn location(&self) -> String {
        match self {
            ConfigError::At { path, .. } => path.clone(),
            ConfigError::Text { line, column, .. } => text_location(*line, *column),
            ConfigError::Read { path, .. } => path.clone(),
        }
    }

    pub(super) fn line(line: usize, message: String) -> Self {
        ConfigError::Text {
            line,
            column: None,
            message,
        }
    }

    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        let path = path.into();
        ConfigError::At {
            path: if path.is_empty() {
                "(top level)".into()
            } else {
                path
            },
            message: message.into(),
        }
    }
}
