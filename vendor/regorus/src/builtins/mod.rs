// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.

#![allow(
    clippy::arithmetic_side_effects,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::shadow_unrelated,
    clippy::unwrap_used,
    clippy::missing_const_for_fn,
    clippy::option_if_let_else,
    clippy::semicolon_if_nothing_returned,
    clippy::useless_let_if_seq
)] // builtins perform validated indexing and intentional arithmetic/string ops

mod aggregates;
mod arrays;
#[cfg(feature = "azure_policy")]
pub mod azure_policy;
mod bitwise;
pub mod comparison;
mod conversions;

mod encoding;
// GATEHOUSE PATCH: Go's JSON escaping, for Gatehouse's io.jwt.encode_sign (which marshals
// its operands as OPA's Go code does).
pub use encoding::go_json_escape;
#[cfg(feature = "glob")]
mod glob;
#[cfg(feature = "graph")]
mod graph;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "net")]
mod net;

#[cfg(feature = "jsonpatch")]
mod json_patch;
pub mod numbers;
mod objects;
#[cfg(feature = "opa-runtime")]
mod opa;
#[cfg(feature = "regex")]
mod regex;
#[cfg(feature = "semver")]
mod semver;
pub mod sets;
mod strings;
#[cfg(feature = "time")]
mod time;
mod tracing;
pub mod types;
mod units;
mod utils;
#[cfg(feature = "uuid")]
mod uuid;

#[cfg(feature = "opa-testutil")]
mod test;

use crate::ast::{Expr, Ref};
use crate::lexer::Span;
use crate::value::Value;

use crate::Map as BuiltinsMap;

use anyhow::Result;
use lazy_static::lazy_static;

pub type BuiltinFcn = (fn(&Span, &[Ref<Expr>], &[Value], bool) -> Result<Value>, u8);

#[rustfmt::skip]
lazy_static! {
    pub static ref BUILTINS: BuiltinsMap<&'static str, BuiltinFcn> = {
	let mut m : BuiltinsMap<&'static str, BuiltinFcn>  = BuiltinsMap::new();

	// comparison functions are directly called.
	numbers::register(&mut m);
	aggregates::register(&mut m);
	arrays::register(&mut m);
	sets::register(&mut m);
	objects::register(&mut m);
	strings::register(&mut m);

	#[cfg(feature = "regex")]
	regex::register(&mut m);

	#[cfg(feature = "glob")]
	glob::register(&mut m);

	#[cfg(feature = "graph")]
	graph::register(&mut m);

	bitwise::register(&mut m);
	conversions::register(&mut m);
	//units::register(&mut m);
	types::register(&mut m);
	encoding::register(&mut m);
	#[cfg(feature = "time")]
	time::register(&mut m);

	//graphql::register(&mut m);
	#[cfg(feature = "http")]
	http::register(&mut m);
	#[cfg(feature = "net")]
	net::register(&mut m);
	//net::register(&mut m);
	#[cfg(feature = "uuid")]
	uuid::register(&mut m);
	#[cfg(feature = "semver")]
	semver::register(&mut m);
	//rego::register(&mut m);
	#[cfg(feature = "azure_policy")]
	azure_policy::register(&mut m);
	#[cfg(feature = "opa-runtime")]
	opa::register(&mut m);
	tracing::register(&mut m);
	units::register(&mut m);

	#[cfg(feature = "opa-testutil")]
	test::register(&mut m);

	// GATEHOUSE PATCH: builtins registered by the embedding application (see
	// `register_host_builtins`). Upstream engines accept extensions on the interpreter
	// only; the RVM resolves builtins from this table alone.
	HOST_BUILTINS_SEALED.store(true, core::sync::atomic::Ordering::SeqCst);
	if let Ok(host) = HOST_BUILTINS.lock() {
	    for (name, fcn) in host.iter() {
	        m.insert(name, *fcn);
	    }
	}

	m
    };
}

// GATEHOUSE PATCH: host builtins, written with the same signature as regorus's own, so that
// both the interpreter and the RVM run them.
static HOST_BUILTINS: std::sync::Mutex<alloc::vec::Vec<(&'static str, BuiltinFcn)>> =
    std::sync::Mutex::new(alloc::vec::Vec::new());
static HOST_BUILTINS_SEALED: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// GATEHOUSE PATCH: adds (or replaces) builtins before the builtin table is first used.
/// Returns an error once any engine has resolved a builtin: the table is then fixed.
pub fn register_host_builtins(builtins: &[(&'static str, BuiltinFcn)]) -> Result<()> {
    if HOST_BUILTINS_SEALED.load(core::sync::atomic::Ordering::SeqCst) {
        anyhow::bail!("builtins are already in use; register host builtins first");
    }
    let mut host = HOST_BUILTINS
        .lock()
        .map_err(|_| anyhow::anyhow!("host builtin table poisoned"))?;
    host.extend_from_slice(builtins);
    Ok(())
}

pub fn must_cache(path: &str) -> Option<&'static str> {
    match path {
        "opa.runtime" => Some("opa.runtime"),
        "rand.intn" => Some("rand.intn"),
        "time.now_ns" => Some("time.now_ns"),
        "uuid.rfc4122" => Some("uuid.rfc4122"),
        _ => None,
    }
}
