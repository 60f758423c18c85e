//! Configuration errors: every problem found, each naming the item.

use std::fmt;

/// One problem in a configuration: which item, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{item}: {message}")]
pub struct ConfigError {
    /// The item, e.g. `path "mail-textify" leg 2`, `zone "lgwan"`, `[flow]`.
    pub item: String,
    /// What is wrong and what to do, in one line.
    pub message: String,
}

/// Every problem found in one configuration; it did not load.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", Lines(self))]
pub struct ConfigErrors {
    /// Where the text came from (e.g. the file path); prefixes every line.
    pub origin: String,
    /// The problems, in configuration order (never empty).
    pub errors: Vec<ConfigError>,
}

struct Lines<'a>(&'a ConfigErrors);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {}: {}", self.0.origin, e.item, e.message)?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// Whether some error's item or message contains `needle` (handy in tests).
    pub fn mentions(&self, needle: &str) -> bool {
        self.errors.iter().any(|e| e.item.contains(needle) || e.message.contains(needle))
    }
}
