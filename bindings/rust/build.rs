//! Finds libdashnas: DASHNAS_LIB_DIR if set, else `pkg-config --libs-only-L dashnas`.
//! Emits the link settings and an rpath for this crate's own tests, and
//! `cargo:rpath=DIR[:DIR]` so a dependent's build script can set the same rpath
//! from DEP_DASHNAS_RPATH (a library's rustc-link-arg does not reach its dependents).

use std::env;
use std::process::Command;

fn pkg_config_dirs() -> Result<Vec<String>, String> {
    let out = Command::new("pkg-config")
        .args(["--libs-only-L", "dashnas"])
        .output()
        .map_err(|e| format!("could not run pkg-config: {}", e))?;
    if !out.status.success() {
        return Err(format!(
            "pkg-config --libs-only-L dashnas failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|t| t.strip_prefix("-L"))
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DASHNAS_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_LIBDIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_SYSROOT_DIR");

    let dirs = match env::var("DASHNAS_LIB_DIR") {
        Ok(dir) if !dir.is_empty() => vec![dir],
        _ => match pkg_config_dirs() {
            Ok(dirs) => dirs,
            Err(e) => {
                // Still try the linker's default paths (an install under /usr/lib).
                println!(
                    "cargo:warning=dashnas: {}; set DASHNAS_LIB_DIR to the folder holding libdashnas.so",
                    e
                );
                Vec::new()
            }
        },
    };

    for dir in &dirs {
        println!("cargo:rustc-link-search=native={}", dir);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
    }
    if !dirs.is_empty() {
        println!("cargo:rpath={}", dirs.join(":"));
    }
    println!("cargo:rustc-link-lib=dylib=dashnas");
}
