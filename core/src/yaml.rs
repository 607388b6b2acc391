//! YAML reading helpers. serde-saphyr is a YAML 1.2 parser: it reads `[::1/128]` in flow
//! sequences (libyaml-based parsers refuse it) and reports exact positions, including for
//! unknown fields, and bounds the work hostile documents can cause.

/// `(line, column)`, 1-based, of a YAML error; `(1, 1)` when the parser gives none.
pub fn error_location(e: &serde_saphyr::Error) -> (usize, usize) {
    e.location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .unwrap_or((1, 1))
}

/// The error's one-line message, without the `line N column M:` prefix and the excerpt
/// (callers put the position in their own `file:line:col:` form).
pub fn error_message(e: &serde_saphyr::Error) -> String {
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
