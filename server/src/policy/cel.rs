//! CEL route rules: one boolean expression over `request`, `route`, `user`, `session`,
//! `device` and `time` (DESIGN §6).

use super::error::PolicyError;
use super::input::InputDocument;

/// A compiled CEL expression.
pub struct CelRule {
    program: cel::Program,
}

impl std::fmt::Debug for CelRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CelRule")
    }
}

thread_local! {
    /// The standard library context is built once per thread; each evaluation adds its
    /// variables in a child scope, so no function registry is rebuilt per request.
    static ROOT: cel::Context<'static, 'static> = cel::Context::default();
}

impl CelRule {
    /// Compiles `expression`; `file:line:col` point into `routes.yaml` where the expression
    /// is written (the CEL position is added to the message).
    pub fn compile(
        expression: &str,
        file: &str,
        line: usize,
        col: usize,
    ) -> Result<CelRule, PolicyError> {
        match cel::Program::compile(expression) {
            Ok(program) => Ok(CelRule { program }),
            Err(errors) => {
                let message = errors
                    .errors
                    .first()
                    .map(|e| format!("CEL expression, column {}: {}", e.pos.1 + 1, e.msg))
                    .unwrap_or_else(|| format!("CEL expression: {errors}"));
                Err(PolicyError::at(file, line, col, message))
            }
        }
    }

    /// Evaluates to `true` or `false`; any other result is an error (fail closed).
    pub fn evaluate(&self, input: InputDocument<cel::Value>) -> Result<bool, String> {
        ROOT.with(|root| {
            let mut ctx = root.new_inner_scope();
            ctx.add_variable_from_value("request", input.request);
            ctx.add_variable_from_value("route", input.route);
            ctx.add_variable_from_value("user", input.identity.user);
            ctx.add_variable_from_value("session", input.identity.session);
            ctx.add_variable_from_value("device", input.identity.device);
            ctx.add_variable_from_value("time", input.time);
            match self.program.execute(&ctx) {
                Ok(cel::Value::Bool(b)) => Ok(b),
                Ok(other) => Err(format!("expression returned {other:?}, not a boolean")),
                // A missing field (`device.managed` without a device) is false, as an
                // undefined reference is in Rego: the request is denied, not failed.
                Err(cel::ExecutionError::NoSuchKey(_)) => Ok(false),
                Err(cel::ExecutionError::UnsupportedTargetType {
                    target: cel::Value::Null,
                }) => Ok(false),
                Err(cel::ExecutionError::NoSuchOverload(e)) if is_field_of_null(&e.to_string()) => {
                    Ok(false)
                }
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// `device.managed` with a null `device` is reported as "no overload of `_._` for null".
fn is_field_of_null(message: &str) -> bool {
    message.contains("'_._'") && message.contains("(null_type")
}
