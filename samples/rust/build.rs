//! The dashnas crate's build script found libdashnas and passes its folder on
//! as DEP_DASHNAS_RPATH (a library's own rustc-link-arg does not reach this
//! binary); bake it in as an rpath so the sample runs without LD_LIBRARY_PATH.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_DASHNAS_RPATH");
    if let Ok(dirs) = std::env::var("DEP_DASHNAS_RPATH") {
        for dir in dirs.split(':').filter(|d| !d.is_empty()) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
        }
    }
}
