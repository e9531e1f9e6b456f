use std::fmt;

/// A contract or schema that cannot be used, with where and why, in words a data engineer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractError {
    /// The file (or other origin) the text came from.
    pub origin: String,
    /// 1-based line in that file, when known.
    pub line: Option<usize>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ContractError {
    pub fn new(origin: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Self { origin: origin.to_string(), line, message: message.into() }
    }

    /// An error about `key`, located at the first line of `text` that defines it.
    pub(crate) fn at_key(origin: &str, text: &str, key: &str, message: impl Into<String>) -> Self {
        Self::new(origin, locate(text, key), message)
    }
}

/// The text a contract was parsed from and the name it goes by in errors: what every noun's
/// `validate` needs to say where a mistake is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

impl<'a> Origin<'a> {
    pub fn new(name: &'a str, text: &'a str) -> Self {
        Self { name, text }
    }

    /// An error about `key`, located at the first line that defines it.
    pub fn at(&self, key: &str, message: impl Into<String>) -> ContractError {
        ContractError::at_key(self.name, self.text, key, message)
    }

    /// An error at a line found some other way (or at no line).
    pub fn at_line(&self, line: Option<usize>, message: impl Into<String>) -> ContractError {
        ContractError::new(self.name, line, message)
    }

    /// First line defining `key` (see [`locate`]).
    pub fn locate(&self, key: &str) -> Option<usize> {
        locate(self.text, key)
    }

    /// First line containing `needle` (see [`locate_text`]).
    pub fn locate_text(&self, needle: &str) -> Option<usize> {
        locate_text(self.text, needle)
    }
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.origin, l, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for ContractError {}

/// First line (1-based) whose content starts with `key` followed by `=` or is the table `[key]`.
pub(crate) fn locate(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            let t = t.strip_prefix('"').map(|r| r.replacen('"', "", 1)).unwrap_or_else(|| t.to_string());
            t.strip_prefix(key).is_some_and(|rest| {
                let rest = rest.trim_start();
                rest.starts_with('=') || rest.starts_with(']')
            }) || t == format!("[{key}]")
        })
        .map(|i| i + 1)
}

/// Line (1-based) of a byte offset in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// First line (1-based) whose text contains `needle` (for items inside arrays, like a column).
pub(crate) fn locate_text(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}
