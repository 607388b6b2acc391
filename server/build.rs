//! `sqlx::migrate!` embeds the migrations at compile time, and cargo does not know the
//! macro read them: without this, a new migration file is missing from an incremental build
//! (what `sqlx migrate build-script` writes).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
