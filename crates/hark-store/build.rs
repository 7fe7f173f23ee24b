//! `sqlx::migrate!` embeds the migration files at compile time but does not tell Cargo
//! about them, so a new migration alone would not rebuild the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
