//! CEL route rules: one boolean expression over `request`, `route`, `user`, `session`,
//! `device` and `time` (docs/policies.md).

use cel::common::value::CowVal;

use super::error::{DecisionError, Engine, EvalError, PolicyError};
use super::input::{CelVal, IdentityDocs, SharedCelVal};

/// Which input variables an expression reads. Building and converting a variable costs
/// microseconds, so only the ones the expression names are built.
#[derive(Debug, Clone, Copy, Default)]
pub struct CelUses {
    pub request: bool,
    pub route: bool,
    pub user: bool,
    pub session: bool,
    pub device: bool,
    pub time: bool,
}

/// A compiled CEL expression.
pub struct CelRule {
    program: cel::Program,
    pub uses: CelUses,
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
            Ok(program) => {
                let refs = program.references();
                let uses = CelUses {
                    request: refs.has_variable("request"),
                    route: refs.has_variable("route"),
                    user: refs.has_variable("user"),
                    session: refs.has_variable("session"),
                    device: refs.has_variable("device"),
                    time: refs.has_variable("time"),
                };
                Ok(CelRule { program, uses })
            }
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

    /// Evaluates to `true` or `false`; any other result is an error (fail closed). Only the
    /// variables in [`CelUses`] are read from `input`.
    pub fn evaluate(&self, input: CelInput<'_>) -> Result<bool, EvalError> {
        ROOT.with(|root| {
            // The variables are lent to this one evaluation (`CelInput` resolves them by
            // reference), so the root's `'static` bounds are shortened to the call.
            let root: &cel::Context<'_, '_> = root;
            let mut ctx = root.new_inner_scope();
            ctx.set_variable_resolver(&input);
            match self.program.execute(&ctx) {
                Ok(cel::Value::Bool(b)) => Ok(b),
                Ok(other) => Err(DecisionError::NotABoolean(format!("{other:?}")).into()),
                // A missing field (`device.managed` without a device) is false, as an
                // undefined reference is in Rego: the request is denied, not failed.
                Err(cel::ExecutionError::NoSuchKey(_)) => Ok(false),
                Err(cel::ExecutionError::UnsupportedTargetType {
                    target: cel::Value::Null,
                }) => Ok(false),
                Err(cel::ExecutionError::NoSuchOverload(e)) if is_field_of_null(&e) => Ok(false),
                Err(e) => Err(EvalError::engine(Engine::Cel, e)),
            }
        })
    }
}

/// One evaluation's variables. The session's documents are borrowed from its cache entry
/// and the per-request ones are built only when the expression names them ([`CelUses`]),
/// so nothing is copied or converted to evaluate: CEL asks for each variable by name as it
/// meets it. A variable that was not built is undeclared (an error, so fail closed), which
/// cannot happen for an expression whose uses were computed from its references.
pub struct CelInput<'a> {
    pub request: Option<CelVal>,
    pub route: Option<CelVal>,
    pub time: Option<CelVal>,
    pub identity: &'a IdentityDocs<SharedCelVal>,
}

impl cel::context::VariableResolver for CelInput<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let value: &'b dyn cel::common::value::Val = match variable {
            "request" => self.request.as_deref()?,
            "route" => self.route.as_deref()?,
            "time" => self.time.as_deref()?,
            "user" => &*self.identity.user,
            "session" => &*self.identity.session,
            "device" => &*self.identity.device,
            _ => return None,
        };
        Some(CowVal::Borrowed(value))
    }
}

/// `device.managed` with a null `device` is reported as "no overload of `_._` for null"
/// (read from the error's parts: formatting it cost more than the rest of the evaluation).
fn is_field_of_null(e: &cel::OverloadError) -> bool {
    e.function() == "_._"
        && !e.is_member_function()
        && e.argument_types()
            .first()
            .is_some_and(|t| t.starts_with("null_type"))
}
