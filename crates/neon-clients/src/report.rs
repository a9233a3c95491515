//! Printing an error with its causes, each once.
//!
//! The error enums of this crate follow one rule: a variant that wraps another error exposes
//! it as its `source` and does not repeat it in its own message. [`Chain`] prints the whole
//! chain, `outer: cause: cause`, as `anyhow`'s `{:#}` does at the binary's edge.

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its sources, separated by `": "`.
///
/// ```
/// let io = std::io::Error::other("disk on fire");
/// let shown = neon_clients::Chain(&io).to_string();
/// assert_eq!(shown, "disk on fire");
/// ```
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
