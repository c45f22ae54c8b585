//! Stamps the binary with its git sha and build date (vergen), shown by `vmcloud --version`,
//! served at `/v1/version` and reported by agents when they register.

use vergen_gitcl::{Build, Emitter, Gitcl};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let build = Build::builder().build_date(true).build();
    let git = Gitcl::builder().sha(true).dirty(true).build();
    Emitter::default()
        .add_instructions(&build)?
        .add_instructions(&git)?
        .emit()?;
    Ok(())
}
