//! Test support for every crate's `documented` module (region's own, and the
//! others' through `#[path]`): the rows of a Markdown table in a doc, so that
//! each doc-against-code test reads tables the same way.

/// The body rows of the first table after `anchor` in `doc` (`name` in the
/// panic when the anchor is missing), as trimmed cells.
pub(crate) fn table_after(doc: &'static str, name: &str, anchor: &str) -> Vec<Vec<&'static str>> {
    let start = doc.find(anchor).unwrap_or_else(|| panic!("{anchor:?} is not in {name}"));
    doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.trim().trim_matches('|').split(" | ").map(str::trim).collect())
        .collect()
}
