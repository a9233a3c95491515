//! Maps JSON pointers back to line:column in the source text, in one non-recursive pass.
//!
//! Locations are computed lazily: only for the pointers of reported diagnostics, after the
//! text is known to be valid JSON (serde_json parsed it first, within its depth limit). The
//! scanner keeps an explicit stack, so no input can overflow the call stack, and it skips every
//! value that no wanted pointer goes through.

use std::collections::{HashMap, HashSet};

/// A 1-based position in the source text. The column counts characters, not bytes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, schemars::JsonSchema,
)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

/// Byte offset → line:column.
pub fn location_of_offset(text: &str, offset: usize) -> Location {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    // Count characters (UTF-8 lead bytes) between the line start and the offset.
    let column = before[line_start..]
        .iter()
        .filter(|&&b| (b & 0xC0) != 0x80)
        .count()
        + 1;
    Location { line, column }
}

/// Where a pointer's value starts and, for an object member, where its key starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PointerLocation {
    /// Start of the value.
    pub(crate) value: Location,
    /// Start of the member's key (`"name": …`), when the value is an object member.
    pub(crate) member: Option<Location>,
}

/// Finds each pointer in `text` (valid JSON). Returns pointer → location for those that
/// exist; a pointer that names nothing is left out.
pub(crate) fn locate_pointers<'p>(
    text: &str,
    pointers: impl IntoIterator<Item = &'p str>,
) -> HashMap<String, PointerLocation> {
    let wanted: HashSet<&str> = pointers.into_iter().collect();
    if wanted.is_empty() {
        return HashMap::new();
    }
    let mut prefixes: HashSet<&str> = HashSet::new();
    for p in &wanted {
        let mut end = p.len();
        while let Some(i) = p[..end].rfind('/') {
            prefixes.insert(&p[..i]);
            end = i;
        }
    }
    let found = scan(text.as_bytes(), &wanted, &prefixes);
    // One sweep over the sorted offsets turns them into line:column.
    let mut offsets: Vec<usize> = found
        .values()
        .flat_map(|&(value, member)| std::iter::once(value).chain(member))
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    let bytes = text.as_bytes();
    let mut at: HashMap<usize, Location> = HashMap::with_capacity(offsets.len());
    let (mut pos, mut line, mut line_start) = (0usize, 1usize, 0usize);
    for offset in offsets {
        while pos < offset {
            if bytes[pos] == b'\n' {
                line += 1;
                line_start = pos + 1;
            }
            pos += 1;
        }
        let column = bytes[line_start..offset]
            .iter()
            .filter(|&&b| (b & 0xC0) != 0x80)
            .count()
            + 1;
        at.insert(offset, Location { line, column });
    }
    found
        .into_iter()
        .map(|(pointer, (value, member))| {
            let location = PointerLocation {
                value: at[&value],
                member: member.map(|m| at[&m]),
            };
            (pointer, location)
        })
        .collect()
}

enum Frame {
    Object { base: usize },
    Array { base: usize, index: usize },
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// End of the string starting at `i` (at the opening quote): index just past the closing quote.
fn skip_string(b: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// End of the value starting at `i`, iteratively.
fn skip_value(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = skip_string(b, i);
                if depth == 0 {
                    return i;
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 0 {
                    return i;
                }
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            b',' | b' ' | b'\t' | b'\n' | b'\r' | b':' if depth == 0 => return i,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Appends `/key` (JSON-pointer escaped) for the raw JSON string at `b[start..end]`.
fn push_key(path: &mut String, raw: &[u8]) {
    path.push('/');
    let inner = &raw[1..raw.len().saturating_sub(1)];
    let decoded: String = if inner.contains(&b'\\') {
        serde_json::from_slice::<String>(raw).unwrap_or_default()
    } else {
        String::from_utf8_lossy(inner).into_owned()
    };
    for c in decoded.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

/// Pointer → (value offset, key offset for object members).
fn scan(
    b: &[u8],
    wanted: &HashSet<&str>,
    prefixes: &HashSet<&str>,
) -> HashMap<String, (usize, Option<usize>)> {
    let mut found = HashMap::new();
    let mut member: Option<usize> = None;
    let mut path = String::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = skip_ws(b, 0);
    // Invariant at the top of the loop: `i` is at the start of a value whose pointer is `path`.
    loop {
        if i >= b.len() {
            break;
        }
        if wanted.contains(path.as_str()) {
            found.insert(path.clone(), (i, member));
            if found.len() == wanted.len() {
                break;
            }
        }
        let descend = prefixes.contains(path.as_str());
        match b[i] {
            b'{' if descend => {
                i = skip_ws(b, i + 1);
                if b.get(i) == Some(&b'"') {
                    let base = path.len();
                    member = Some(i);
                    let end = skip_string(b, i);
                    push_key(&mut path, &b[i..end]);
                    i = skip_ws(b, end);
                    i = skip_ws(b, i + 1); // past ':'
                    stack.push(Frame::Object { base });
                    continue;
                }
                i += 1; // empty object
            }
            b'[' if descend => {
                i = skip_ws(b, i + 1);
                if b.get(i) != Some(&b']') {
                    let base = path.len();
                    member = None;
                    path.push_str("/0");
                    stack.push(Frame::Array { base, index: 0 });
                    continue;
                }
                i += 1; // empty array
            }
            _ => i = skip_value(b, i),
        }
        // After a value: continue with the next member/element, or close containers.
        match next_value(b, i, &mut stack, &mut path, &mut member) {
            Some(next) => i = next,
            None => break,
        }
    }
    found
}

/// After a value that ends before `i`: moves to the start of the next member or element,
/// closing finished containers and keeping `path` and `member` up to date; `None` at the end
/// of the document.
fn next_value(
    b: &[u8],
    mut i: usize,
    stack: &mut Vec<Frame>,
    path: &mut String,
    member: &mut Option<usize>,
) -> Option<usize> {
    loop {
        let frame = stack.last_mut()?;
        i = skip_ws(b, i);
        match (b.get(i), frame) {
            (Some(b','), Frame::Object { base }) => {
                path.truncate(*base);
                i = skip_ws(b, i + 1);
                *member = Some(i);
                let end = skip_string(b, i);
                push_key(path, &b[i..end]);
                i = skip_ws(b, end);
                return Some(skip_ws(b, i + 1)); // past ':'
            }
            (Some(b','), Frame::Array { base, index }) => {
                path.truncate(*base);
                *member = None;
                *index += 1;
                path.push('/');
                path.push_str(&index.to_string());
                return Some(skip_ws(b, i + 1));
            }
            (Some(_), Frame::Object { base } | Frame::Array { base, .. }) => {
                // '}' or ']'
                path.truncate(*base);
                stack.pop();
                i += 1;
            }
            (None, _) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_pointers() {
        let text = "{\n  \"a\": [1, {\"b~/c\": \"x\"}, []],\n  \"é\": {\"k\": null, \"z\": {}},\n  \"q\": \"s\\\"}\"\n}";
        let check = |pointer: &str, expect: Option<(usize, usize)>| {
            let got = locate_pointers(text, [pointer])
                .get(pointer)
                .map(|l| (l.value.line, l.value.column));
            assert_eq!(got, expect, "pointer {pointer:?}");
        };
        check("", Some((1, 1)));
        check("/a", Some((2, 8)));
        check("/a/0", Some((2, 9)));
        check("/a/1/b~0~1c", Some((2, 21)));
        check("/a/2", Some((2, 27)));
        check("/a/3", None);
        check("/é/k", Some((3, 14)));
        check("/é/z", Some((3, 25)));
        check("/q", Some((4, 8)));
        check("/nope", None);
        let found = locate_pointers(text, ["/a", "/a/1/b~0~1c", "/a/0"]);
        let member = |p: &str| found[p].member.map(|l| (l.line, l.column));
        assert_eq!(member("/a"), Some((2, 3)));
        assert_eq!(member("/a/1/b~0~1c"), Some((2, 13)));
        assert_eq!(member("/a/0"), None);
    }

    #[test]
    fn offset_to_location() {
        assert_eq!(
            location_of_offset("ab\nçd", 5),
            Location { line: 2, column: 2 }
        );
        assert_eq!(location_of_offset("", 10), Location { line: 1, column: 1 });
    }
}
