//! Policy errors. Load errors always read `file:line:col: message`, so editors and CI logs
//! can jump to the spot; evaluation errors are kept short and never reach the client.

use std::fmt;

/// A problem in a policy bundle, or in evaluating one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// A file of the bundle is wrong: `file:line:col: message` (plus any detail lines,
    /// such as regorus' caret display).
    Load {
        file: String,
        line: usize,
        col: usize,
        message: String,
        detail: Option<String>,
    },
    /// Evaluating a route's policy failed. The request fails closed (500).
    Eval { route: String, error: EvalError },
}

/// Why a route's policy gave no decision. Every one fails the request closed (500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The route names a Rego package or CEL rule the bundle did not compile. Loading
    /// checks every route, so this is a bug in Gatehouse, not in the policy.
    #[error("{0} is not compiled")]
    NotCompiled(String),
    /// The engine failed: a builtin's error, a conflict between rules, the instruction or
    /// time limit. The engines report text only (anyhow errors), kept as they wrote it.
    #[error("{message} ({engine})")]
    Engine { engine: Engine, message: String },
    /// The policy answered, but not with a decision Gatehouse can send.
    #[error(transparent)]
    Decision(#[from] DecisionError),
}

impl EvalError {
    pub fn engine(engine: Engine, error: impl fmt::Display) -> EvalError {
        EvalError::Engine {
            engine,
            message: format!("{error:#}"),
        }
    }

    /// Whether the policy calls something the engine does not know (an unknown function or
    /// builtin, a missing rule): a mistake that no input avoids, so loading refuses it.
    pub fn is_unknown_name(&self) -> bool {
        match self {
            EvalError::Engine { message, .. } => {
                message.contains("unknown")
                    || message.contains("not found")
                    || message.contains("builtin")
            }
            _ => false,
        }
    }
}

/// Which engine failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// regorus's bytecode VM, which serves most Rego routes.
    RegoVm,
    /// regorus's interpreter, which runs the tests and the routes the VM cannot prove
    /// conflict-free.
    RegoInterpreter,
    Cel,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::RegoVm => "Rego bytecode VM",
            Engine::RegoInterpreter => "Rego interpreter",
            Engine::Cel => "CEL",
        })
    }
}

/// A policy's answer that is not a decision (docs/policies.md, "The decision object").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error("decision is not an object: {0}")]
    NotAnObject(String),
    #[error("`reason` must be a string, got {0}")]
    Reason(String),
    #[error("`headers` must be an object, got {0}")]
    HeadersNotAnObject(String),
    #[error("`headers` must map strings to strings, got {name}: {value}")]
    HeaderNotAString { name: String, value: String },
    #[error("header name `{0}` must be a valid name starting with `X-`")]
    HeaderName(String),
    #[error("header `{0}` has a value that cannot be sent")]
    HeaderValue(String),
    #[error("`status` must be 401 or 403")]
    Status,
    #[error("`status` must be 401 or 403, got {0}")]
    StatusNotANumber(String),
    #[error("expression returned {0}, not a boolean")]
    NotABoolean(String),
}

impl PolicyError {
    pub fn at(file: &str, line: usize, col: usize, message: impl Into<String>) -> PolicyError {
        PolicyError::Load {
            file: file.to_string(),
            line: line.max(1),
            col: col.max(1),
            message: message.into(),
            detail: None,
        }
    }

    pub fn eval(route: &str, error: impl Into<EvalError>) -> PolicyError {
        PolicyError::Eval {
            route: route.to_string(),
            error: error.into(),
        }
    }

    /// Builds a load error from a regorus error text, which carries `--> file:line:col` or
    /// `file:line:col` somewhere in it. Falls back to `fallback_file:1:1`.
    pub fn from_rego(fallback_file: &str, text: &str) -> PolicyError {
        let (file, line, col) = find_location(text).unwrap_or((fallback_file.to_string(), 1, 1));
        // regorus writes the location, then the source excerpt (`5 |   no_such.fn(1)`,
        // `  | ^`), then `error: message`. The message is the `error:` line; texts without
        // one take their first line that is neither the location nor the excerpt.
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let message = lines
            .clone()
            .find(|l| l.starts_with("error:"))
            .or_else(|| lines.find(|l| !l.starts_with("-->") && !is_excerpt_line(l)))
            .unwrap_or("policy error")
            .trim_start_matches("error:")
            .trim()
            .to_string();
        let message = strip_location_prefix(&message);
        PolicyError::Load {
            file,
            line,
            col,
            message,
            detail: Some(text.trim_end().to_string()),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::Load {
                file,
                line,
                col,
                message,
                ..
            } => write!(f, "{file}:{line}:{col}: {message}"),
            PolicyError::Eval { route, error } => {
                write!(f, "route `{route}`: policy evaluation failed: {error}")
            }
        }
    }
}

impl std::error::Error for PolicyError {}

impl PolicyError {
    /// The full report: the one-line message and, for Rego errors, the source excerpt.
    pub fn report(&self) -> String {
        match self {
            PolicyError::Load {
                detail: Some(d), ..
            } => format!("{self}\n{d}"),
            _ => self.to_string(),
        }
    }
}

/// A line of regorus's source excerpt: `  |`, `  | ^` or `12 | allow if {`.
fn is_excerpt_line(line: &str) -> bool {
    line.trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_start()
        .starts_with('|')
}

/// Finds a `path:line:col` triple in text, e.g. `--> policies/a.rego:3:7`.
fn find_location(text: &str) -> Option<(String, usize, usize)> {
    for token in text.split_whitespace() {
        let token = token.trim_end_matches([':', ',']);
        let mut parts = token.rsplitn(3, ':');
        let (Some(col), Some(line), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if let (Ok(line), Ok(col)) = (line.parse::<usize>(), col.parse::<usize>())
            && !file.is_empty()
            && (file.ends_with(".rego") || file.ends_with(".yaml") || file.contains('/'))
        {
            return Some((file.to_string(), line, col));
        }
    }
    None
}

fn strip_location_prefix(message: &str) -> String {
    match find_location(message) {
        Some((file, line, col)) => message
            .replacen(&format!("{file}:{line}:{col}:"), "", 1)
            .replacen(&format!("{file}:{line}:{col}"), "", 1)
            .trim()
            .trim_start_matches("error:")
            .trim()
            .to_string(),
        None => message.to_string(),
    }
}

/// The 1-based line and column of the first `name: <value>` (or bare `<value>`) in `text`;
/// used to point YAML semantic errors at the route they are about.
pub fn locate(text: &str, value: &str) -> (usize, usize) {
    if value.is_empty() {
        return (1, 1);
    }
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
        if let Some(rest) = trimmed.strip_prefix("name:") {
            let rest = rest.trim().trim_matches(['"', '\'']);
            if rest == value {
                return (n + 1, line.len() - trimmed.len() + 1);
            }
        }
    }
    for (n, line) in text.lines().enumerate() {
        if let Some(col) = line.find(value) {
            return (n + 1, col + 1);
        }
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_finds_the_route_name_line() {
        let text = "routes:\n  - name: a\n    path: /a\n  - name: b\n";
        assert_eq!(locate(text, "b"), (4, 5));
        assert_eq!(locate(text, "a"), (2, 5));
    }

    #[test]
    fn rego_error_text_becomes_file_line_col() {
        let text =
            "error: unexpected token\n --> policies/a.rego:3:7\n  |\n3 | allow if {\n  |       ^";
        let e = PolicyError::from_rego("x.rego", text);
        assert_eq!(e.to_string(), "policies/a.rego:3:7: unexpected token");
        assert!(e.report().contains('^'));
    }

    #[test]
    fn the_message_is_the_error_line_not_the_source_excerpt() {
        // As regorus writes a parse error: location, excerpt, then the message.
        let text = "\n--> broken.rego:5:1\n  |\n5 | allow if {\n  | ^\nerror: expecting expression";
        let e = PolicyError::from_rego("x.rego", text);
        assert_eq!(e.to_string(), "broken.rego:5:1: expecting expression");
    }

    #[test]
    fn excerpt_lines_are_recognised() {
        assert!(is_excerpt_line("|"));
        assert!(is_excerpt_line("| ^"));
        assert!(is_excerpt_line("12 | allow if {"));
        assert!(!is_excerpt_line("unexpected token"));
        assert!(!is_excerpt_line("2 rules conflict"));
    }
}
