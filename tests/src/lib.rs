//! Cross-crate integration tests (in `tests/tests/`); this library is empty.
