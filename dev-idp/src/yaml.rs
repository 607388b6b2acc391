//! Positions and messages of serde-saphyr errors, for `file:line:col: message` reports of a
//! bad dev IdP file. The same two helpers as the `gatehouse` crate's `yaml` module: this
//! crate cannot use that one (`gatehouse` depends on this crate, not the other way round).

/// `(line, column)`, 1-based, of a YAML error; `(1, 1)` when the parser gives none.
pub(crate) fn error_location(e: &serde_saphyr::Error) -> (usize, usize) {
    e.location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .unwrap_or((1, 1))
}

/// The error's one-line message, without the `line N column M:` prefix and the excerpt
/// (callers put the position in their own `file:line:col:` form).
pub(crate) fn error_message(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error:").unwrap_or(first).trim();
    match first
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((position, message)) if position.contains("column") => message.to_string(),
        _ => first.to_string(),
    }
}
